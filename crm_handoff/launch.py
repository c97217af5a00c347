"""The ``handoff`` console script: checks the install, then runs ``sync.cli``.

crm-handoff installs four top-level packages: ``crm_handoff`` and, because the project's
layout keeps them as top-level folders, ``connectors``, ``mappings`` and ``sync``. Those
three names are generic; another distribution in the same environment may ship one of
them. Installing them under ``crm_handoff.`` instead would need an import hook that
static tools (mypy, IDEs) cannot follow, or moving the folders. So the entry point lives
here, under the distinct name, and refuses to start - one line, exit code 2 - when one of
the three resolves to files outside this installation, instead of failing later with an
import error from someone else's package. Only this launcher looks at ``sync`` from
below (by name, through importlib); nothing else in ``crm_handoff`` does.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

GENERIC = ("connectors", "mappings", "sync")


def clashes(root: Path | None = None) -> list[str]:
    """The generic package names that resolve outside this installation, with where."""
    here = (root or Path(__file__).resolve().parents[1]).resolve()
    out = []
    for name in GENERIC:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or origin.parent.parent != here:
            out.append(f"{name} ({origin.parent if origin else 'not found'})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``handoff`` (``sync.cli.main``) once the install is checked."""
    wrong = clashes()
    if wrong:
        print(
            f"error: another package shadows crm-handoff's {', '.join(wrong)}: install crm-handoff "
            "in a virtual environment of its own",
            file=sys.stderr,
        )
        return 2
    cli = importlib.import_module("sync.cli")
    code: int = cli.main(argv)
    return code


if __name__ == "__main__":
    sys.exit(main())
