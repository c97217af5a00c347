"""Moved to ``crm_handoff.errors``, the shared vocabulary below every package: import it from there.

Kept only while code written against the old place is merged; nothing in this repository imports it.
"""

from crm_handoff.errors import *  # noqa: F403
