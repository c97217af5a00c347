"""Values that must never be printed: settings' secrets and tokens obtained at run time.

``sync.logs`` replaces each registered value by ``***`` in every log line; connectors
register the session ids and access tokens they obtain (login, OAuth refresh).
"""

from __future__ import annotations

SECRETS: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never print this value: it is replaced by ``***`` in every log line (also as written
    with escaped newlines, the way a PEM key is often put in one environment line)."""
    if not value or len(value) < 6:
        return
    SECRETS.add(value)
    for form in (value.replace("\\n", "\n"), value.replace("\n", "\\n"), value.strip()):
        if len(form) >= 6:
            SECRETS.add(form)
