"""Moved to ``crm_handoff.clock``, the shared vocabulary below every package: import it from there.

Kept only while code written against the old place is merged; nothing in this repository imports it.
"""

from crm_handoff.clock import *  # noqa: F403
