"""The content library (pure): what a person consumed, the buyer gate they reached, what next.

An asset is named by its ``id`` (its url when it has none) and ``version``; the versions
of one asset are the assets sharing its id, and those linked by ``supersedes``. Only the
*current* asset of a line is ever recommended: not ``retired``, not superseded by another
asset, and the highest version of its id. A person *consumed* an asset when one of their
activities names any version of it: the title names its title (a whole phrase, any case)
or a url in the title is its url (scheme, ``www.``, query, fragment and a final ``/``
aside). With ``content`` (gates; its ``assets`` are then the library), a person has reached the furthest gate of their stage
(``content.stages``), their behaviour (``content.behaviour``) and the assets they
consumed; they are recommended the current, unconsumed assets of the next gate (the last
gate stays the last; with none left there, the later gates, then the earlier ones from
the gate reached down), those whose topics match recent activity titles first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from crm_handoff.records import ACTIVITY_KINDS, Activity
from mappings.models import Content, ContentAsset, Handoff, MappingSet

Loc = tuple[str | int, ...]
_URL = re.compile(r"https?://[^\s<>\"'()]+", re.IGNORECASE)


def mentions(phrase: str, text: str) -> bool:
    """``phrase`` appears in ``text`` as whole words, any case and spacing."""
    words = phrase.split()
    if not words:
        return False
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


@functools.lru_cache(maxsize=65536)
def norm_url(url: str) -> str:
    """The form urls are compared in: host (no ``www.``) and path (no final ``/``), lower-case host."""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    return f"{host}{parts.path.rstrip('/')}"


@functools.lru_cache(maxsize=65536)
def urls_in(text: str) -> frozenset[str]:
    """The urls ``text`` holds, compared form."""
    return frozenset(norm_url(u.rstrip(".,;")) for u in _URL.findall(text))


def opens(activity: Activity, url: str) -> bool:
    """Whether ``activity`` (an email click, a page view, a download) is on ``url``."""
    return norm_url(url) in urls_in(activity.title)


def lines(library: Sequence[ContentAsset]) -> dict[str, str]:
    """Asset key -> the key of the first asset of its line (versions share a line)."""
    by_key = {a.key: a for a in library}
    root: dict[str, str] = {}
    for asset in library:
        seen = [asset.key]
        while (prev := by_key[seen[-1]].supersedes) in by_key and prev not in seen:
            seen.append(prev)
        root[asset.key] = seen[-1]
    return root


def current(library: Sequence[ContentAsset]) -> list[ContentAsset]:
    """The assets that may be recommended: not retired, not superseded, the highest version of their id."""
    replaced = {a.supersedes for a in library if a.supersedes}
    top: dict[str, int] = {}
    for a in library:
        top[a.key] = max(top.get(a.key, 0), a.version)
    return [a for a in library if not a.retired and a.key not in replaced and a.version == top[a.key]]


def consumed(library: Sequence[ContentAsset], activities: Iterable[Activity]) -> set[str]:
    """The lines (``lines`` roots) of the assets an activity names, any version."""
    root = lines(library)
    titles = [a.title for a in activities if a.title]
    urls: set[str] = set().union(*(urls_in(t) for t in titles))
    return {
        root[a.key] for a in library if norm_url(a.url) in urls or any(mentions(a.title, t) for t in titles)
    }


def gate_reached(
    content: Content, library: Sequence[ContentAsset], stage: str | None, activities: Sequence[Activity]
) -> int | None:
    """The index in ``content.gates`` of the furthest gate the person reached (None: none)."""
    reached: list[str] = []
    if stage and stage in content.stages:
        reached.append(content.stages[stage])
    for rule in content.behaviour:
        if any(_fits(rule.kinds, rule.topics, a) for a in activities):
            reached.append(rule.gate)
    done = consumed(library, activities)
    root = lines(library)
    reached += [a.gate for a in library if a.gate and root[a.key] in done]
    found = [content.gates.index(g) for g in reached if g in content.gates]
    return max(found) if found else None


def _fits(kinds: Sequence[str], topics: Sequence[str], activity: Activity) -> bool:
    if kinds and activity.kind not in kinds:
        return False
    return not topics or any(mentions(t, activity.title) for t in topics)


def gate_order(reached: int | None, count: int) -> list[int]:
    """The gate indexes to recommend from, in preference: the next, the later ones, then back from the reached."""
    nxt = 0 if reached is None else min(reached + 1, count - 1)
    return [*range(nxt, count), *range(nxt - 1, -1, -1)]


def recommend_gated(
    content: Content,
    library: Sequence[ContentAsset],
    activities: Sequence[Activity],
    recent: Sequence[Activity],
    stage: str | None,
    industry: str | None = None,
) -> list[ContentAsset]:
    """The next gate's current assets the person has not consumed (see the module)."""
    done, root = consumed(library, activities), lines(library)
    fresh = [a for a in current(library) if root[a.key] not in done and serves(a, industry)]
    titles = [a.title for a in recent]
    for gate in gate_order(gate_reached(content, library, stage, activities), len(content.gates)):
        here = [a for a in fresh if a.gate == content.gates[gate]]
        if here:
            here.sort(key=lambda a: not any(mentions(t, x) for t in a.topics for x in titles))
            return here[: content.limit]
    return []


def recommend_ungated(
    library: Sequence[ContentAsset],
    recent: Sequence[Activity],
    stage: str | None,
    industry: str | None = None,
    history: Sequence[Activity] | None = None,
) -> list[ContentAsset]:
    """Without gates: current assets whose topics appear in recent activity titles, else
    those for the stage; never one the person consumed (in ``history``, else ``recent``)."""
    done, root = consumed(library, recent if history is None else history), lines(library)
    served = [a for a in current(library) if serves(a, industry) and root[a.key] not in done]
    titles = [a.title for a in recent]
    by_topic = [a for a in served if any(mentions(t, title) for t in a.topics for title in titles)]
    if by_topic:
        return by_topic[:3]
    return [a for a in served if stage in a.stages][:2]


def pick(
    cfg: Handoff,
    activities: Sequence[Activity],
    recent: Sequence[Activity],
    stage: str | None,
    industry: str | None,
) -> list[ContentAsset]:
    """The assets a brief recommends: by gate with ``content``, else by topic and stage."""
    if cfg.content is None:
        return recommend_ungated(cfg.assets, recent, stage, industry, activities)
    return recommend_gated(cfg.content, cfg.assets, activities, recent, stage, industry)


def serves(asset: ContentAsset, industry: str | None) -> bool:
    """An asset naming industries serves people in one of them; the others serve everyone."""
    if not asset.industries:
        return True
    return (industry or "").strip().casefold() in {i.casefold() for i in asset.industries}


# --- validation ----------------------------------------------------------------


def _asset_locs(h: Handoff) -> list[tuple[Loc, ContentAsset]]:
    if h.content:
        return [(("content", "assets", i), a) for i, a in enumerate(h.content.assets)]
    return [(("content_library", i), a) for i, a in enumerate(h.content_library)]


def content_problems(m: MappingSet) -> list[tuple[str, Loc, str]]:
    """(file, field path, message) for every content key that names something unknown."""
    h = m.handoff
    problems = _asset_problems(h, set(m.lifecycle.all_stages)) + _cycle_problems(h)
    if h.content:
        problems += _gate_problems(h.content, m.lifecycle.all_stages)
    return [("handoff", loc, msg) for loc, msg in problems]


def _asset_problems(h: Handoff, stages: set[str]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    first: dict[tuple[str, int], Loc] = {}
    keys = {a.key for a in h.assets}
    gates = list(h.content.gates) if h.content else []
    for loc, a in _asset_locs(h):
        if (a.key, a.version) in first:
            out.append(
                (
                    loc,
                    f"asset {a.key!r} version {a.version} is listed twice (first at {_path(first[(a.key, a.version)])})",
                )
            )
        first.setdefault((a.key, a.version), loc)
        if a.supersedes is not None and (a.supersedes not in keys or a.supersedes == a.key):
            out.append(
                (
                    (*loc, "supersedes"),
                    f"{a.supersedes!r} is not the id of another asset; expected one of {sorted(keys - {a.key})}",
                )
            )
        if a.gate is not None and a.gate not in gates:
            why = f"expected one of {gates}" if gates else "gates need the content key (content.gates)"
            out.append(((*loc, "gate"), f"unknown gate {a.gate!r}; {why}"))
        elif a.gate is None and gates and not a.retired:
            out.append(
                (loc, f"asset {a.key!r} has no gate; with content.gates every asset needs one of {gates}")
            )
        if loc[0] == "content":
            out += [
                ((*loc, "stages", j), f"unknown stage {s!r}; expected one of {sorted(stages)}")
                for j, s in enumerate(a.stages)
                if s not in stages
            ]
    return out


def _cycle_problems(h: Handoff) -> list[tuple[Loc, str]]:
    """An asset whose ``supersedes`` chain comes back to it (no version of it could be current)."""
    by_key = {a.key: a for a in h.assets}
    out: list[tuple[Loc, str]] = []
    for loc, a in _asset_locs(h):
        chain = [a.key]
        while (prev := by_key[chain[-1]].supersedes) in by_key and prev not in chain:
            chain.append(prev)
        if prev == a.key:
            out.append(
                ((*loc, "supersedes"), f"supersedes goes round in a circle: {' -> '.join([*chain, a.key])}")
            )
    return out


def _gate_problems(c: Content, stages: Sequence[str]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    gates = list(c.gates)
    out += [
        (("content", "gates", i), f"gate {g!r} is listed twice")
        for i, g in enumerate(gates)
        if g in gates[:i]
    ]
    for stage, gate in c.stages.items():
        if stage not in stages:
            out.append(
                (("content", "stages", stage), f"unknown stage {stage!r}; expected one of {sorted(stages)}")
            )
        if gate not in gates:
            out.append((("content", "stages", stage), f"unknown gate {gate!r}; expected one of {gates}"))
    for i, rule in enumerate(c.behaviour):
        if rule.gate not in gates:
            out.append(
                (("content", "behaviour", i, "gate"), f"unknown gate {rule.gate!r}; expected one of {gates}")
            )
        out += [
            (
                ("content", "behaviour", i, "kinds", j),
                f"unknown activity kind {k!r}; expected one of {list(ACTIVITY_KINDS)}",
            )
            for j, k in enumerate(rule.kinds)
            if k not in ACTIVITY_KINDS
        ]
    return out


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
