"""Where a rep is told about a handoff or an SLA breach (``reps.yaml`` ``notify``).

A revops admin writes, at the top of ``reps.yaml`` (every rep) or on one rep (replacing
the top-level block whole for that rep; ``notify: {}`` tells them nothing)::

    notify:
      slack: SLACK_WEBHOOK_SALES   # the environment variable holding the incoming-webhook URL
      email: true                  # true: the rep's own email; or an address; false: none

The webhook URL is a secret (it lets anyone post to the channel), so the file names the
variable that holds it, never the URL itself.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
CHANNELS = ("slack", "email")


class Notify(BaseModel):
    """A rep's notification channels: a Slack incoming webhook (by environment variable) and email."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    slack: str | None = None  # name of the environment variable holding the webhook URL
    email: bool | str | None = None  # True: the rep's email; an address; False/None: no email

    @field_validator("slack", mode="before")
    @classmethod
    def _env_name(cls, value: Any) -> Any:
        if value is None or value is False:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                "expected the name of the environment variable holding the Slack webhook URL, "
                "e.g. SLACK_WEBHOOK_SALES"
            )
        text = value.strip()
        if "://" in text or text.lower().startswith("hooks."):
            raise ValueError(
                "a webhook URL is a secret: put it in an environment variable and give that "
                "variable's name here, e.g. SLACK_WEBHOOK_SALES"
            )
        if not _ENV_NAME.match(text):
            raise ValueError(
                f"{text[:40]!r} is not an environment variable name (letters, digits and _, "
                "e.g. SLACK_WEBHOOK_SALES)"
            )
        return text

    @field_validator("email", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if not isinstance(value, str) or not _ADDRESS.match(value.strip()):
            raise ValueError(
                f"expected true (the rep's email), false or one email address; got {str(value)[:60]!r}"
            )
        return value.strip().lower()

    def email_to(self, rep_email: str) -> str | None:
        """The address messages go to for a rep with this email (None: no email)."""
        if self.email is True:
            return rep_email
        return self.email or None

    def targets(self, rep_email: str) -> list[tuple[str, str]]:
        """(channel, target) pairs: ``("slack", env var name)``, ``("email", address)``."""
        out: list[tuple[str, str]] = []
        if self.slack:
            out.append(("slack", self.slack))
        address = self.email_to(rep_email)
        if address:
            out.append(("email", address))
        return out
