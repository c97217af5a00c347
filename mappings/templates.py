"""Task subject/body templates: Jinja2 in a sandbox, so a mapping file cannot run code."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True)


@lru_cache(maxsize=32)
def compile_template(source: str) -> Template:
    """Compile a template; raises ``jinja2.TemplateSyntaxError`` on bad syntax."""
    return _ENV.from_string(source)


def render(source: str, **context: Any) -> str:
    """Render ``source`` with ``context``."""
    return compile_template(source).render(**context)
