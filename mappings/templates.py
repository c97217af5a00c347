"""Task subject/body templates: Jinja2 in a sandbox, so a mapping file cannot run code.

Every way a template can fail (bad syntax, an unknown variable or attribute, a reach
outside the sandbox, an error in its own expressions) surfaces as one
``TemplateProblem`` carrying the template line, never as a Jinja traceback.
``check_template`` finds these before a run: statically (every name and attribute
path the template uses, whichever branch it is in) and by rendering sample contexts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_FUNCTION_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
    UNSAFE_METHOD_ATTRIBUTES,
    SandboxedEnvironment,
)

MAX_REPEAT = 100_000  # longest string/list a template may build with ``*``
MAX_POWER_BITS = 4_096  # largest number a template may build with ``**``
_UNSAFE_NAMES = (
    {"mro"}
    | UNSAFE_FUNCTION_ATTRIBUTES
    | UNSAFE_METHOD_ATTRIBUTES
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)
_TEMPLATE_FILE = "<template>"


class TemplateProblem(Exception):
    """Why a template cannot render; ``line`` is 1-based within the template (or None)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


class _Env(SandboxedEnvironment):
    """The sandbox, also refusing ``*`` and ``**`` results too large to hold in memory."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _int(left) and _int(right) and right > 0:
            _bound(max(abs(left).bit_length(), 1) * right, MAX_POWER_BITS, f"{left} ** {right}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and _int(times):
                    _bound(len(seq) * times, MAX_REPEAT, f"{len(seq)} characters/items times {times}")
        return super().call_binop(context, operator, left, right)


def _bound(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise SecurityError(f"{what} is too large for a template")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ENV = _Env(undefined=StrictUndefined, autoescape=False, trim_blocks=True)


@lru_cache(maxsize=32)
def compile_template(source: str) -> Template:
    """Compile a template; raises ``jinja2.TemplateSyntaxError`` on bad syntax."""
    return _ENV.from_string(source)


def render(source: str, **context: Any) -> str:
    """Render ``source`` with ``context``; any failure is a ``TemplateProblem``."""
    try:
        template = compile_template(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}", exc.lineno) from None
    try:
        return template.render(**context)
    except SecurityError as exc:
        raise TemplateProblem(f"not allowed in a sandboxed template: {exc}", _line(exc)) from None
    except UndefinedError as exc:
        raise TemplateProblem(f"unknown variable or attribute: {exc}", _line(exc)) from None
    except Exception as exc:  # the template's own expressions: 1/0, 'a' + 1, int('x')...
        raise TemplateProblem(f"template failed: {type(exc).__name__}: {exc}", _line(exc)) from None


def _line(exc: BaseException) -> int | None:
    """The template line of the innermost template frame (Jinja rewrites tracebacks so)."""
    line = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def check_template(source: str, contexts: Sequence[Mapping[str, Any]]) -> list[TemplateProblem]:
    """Every problem ``source`` has against the variables of ``contexts`` (first = fullest).

    Names and attribute paths are checked statically against the first context, so a
    typo in a branch no sample reaches is still found; then each context is rendered.
    """
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(f"template syntax error: {exc.message}", exc.lineno)]
    problems = _unknown_names(ast, contexts[0]) + _bad_paths(ast, contexts[0])
    if problems:
        return sorted(problems, key=lambda p: p.line or 0)
    for context in contexts:
        try:
            render(source, **context)
        except TemplateProblem as exc:
            return [exc]
    return []


def _unknown_names(ast: nodes.Template, context: Mapping[str, Any]) -> list[TemplateProblem]:
    known = set(context) | set(_ENV.globals)
    out = []
    for name in sorted(meta.find_undeclared_variables(ast) - known):
        line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), None)
        out.append(TemplateProblem(f"unknown variable {name!r} (known: {', '.join(sorted(context))})", line))
    return out


def _bad_paths(ast: nodes.Template, context: Mapping[str, Any]) -> list[TemplateProblem]:
    """Unsafe attributes anywhere, and unknown attributes of the context's own values.

    One problem a line: of ``''.__class__.__mro__`` the innermost (``__class__``).
    """
    by_line: dict[int, TemplateProblem] = {}
    for node in _attribute_nodes(ast):  # pre-order: an outer attribute before its inner ones
        attr = _attr_name(node)
        if attr is not None and (attr.startswith("_") or attr in _UNSAFE_NAMES):
            message = f"not allowed in a sandboxed template: attribute {attr!r}"
            by_line[node.lineno] = TemplateProblem(message, node.lineno)
    roots = _roots(ast, context)
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain and chain[0] in roots and node.lineno not in by_line:
            problem = _resolve(roots[chain[0]], chain)
            if problem:
                by_line[node.lineno] = TemplateProblem(problem, node.lineno)
    return list(by_line.values())


def _roots(ast: nodes.Template, context: Mapping[str, Any]) -> dict[str, Any]:
    """Names whose value is known: context variables the template does not rebind, and
    the variable of a loop over a context list (bound only there), as its first item."""
    stores = Counter(n.name for n in ast.find_all(nodes.Name) if n.ctx != "load")
    roots = {name: value for name, value in context.items() if name not in stores}
    for loop in ast.find_all(nodes.For):
        target = loop.target
        chain = [loop.iter.name] if isinstance(loop.iter, nodes.Name) else _chain(loop.iter)
        if not (isinstance(target, nodes.Name) and stores[target.name] == 1 and chain):
            continue
        items = _follow(roots, chain)
        if isinstance(items, list) and items:
            roots[target.name] = items[0]
    return roots


def _follow(roots: Mapping[str, Any], chain: list[str]) -> Any:
    value = roots.get(chain[0])
    for attr in chain[1:]:
        if not isinstance(value, Mapping):
            return None
        value = _ENV.getattr(value, attr)
    return value


def _attribute_nodes(ast: nodes.Template) -> Iterable[nodes.Node]:
    yield from ast.find_all((nodes.Getattr, nodes.Getitem))
    for f in ast.find_all(nodes.Filter):
        if f.name == "attr":
            yield f


def _attr_name(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return node.arg.value if isinstance(node.arg.value, str) else None
    if isinstance(node, nodes.Filter) and node.args and isinstance(node.args[0], nodes.Const):
        return str(node.args[0].value)
    return None


def _chain(node: nodes.Node) -> list[str] | None:
    """``person.fields.x`` as ['person', 'fields', 'x']; None if not a plain name path."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        attr = _attr_name(node)
        if attr is None:
            return None
        parts.append(attr)
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return [node.name, *reversed(parts)]


def _resolve(value: Any, chain: list[str]) -> str | None:
    """Follow ``chain[1:]`` from ``value`` the way the template will; a problem or None."""
    for i, attr in enumerate(chain[1:], start=1):
        if not isinstance(value, Mapping):
            return None  # a string, number or list: its methods/items are checked when rendered
        nxt = _ENV.getattr(value, attr)
        if isinstance(nxt, Undefined):
            path = ".".join(chain[:i])
            keys = ", ".join(sorted(str(k) for k in value)) or "none"
            return f"unknown attribute {attr!r} of {path} (it has: {keys})"
        value = nxt
    return None
