"""The mapping files revops admins edit, and what they mean.

Holds the schema of the mapping files (``models``, with ``availability`` and ``outcomes``),
the strict loader with line-precise errors (``loader``), the canonical funnel and stage
translation (``lifecycle``), the sandboxed Jinja2 templates of the brief (``templates``,
fed by ``context``), the check of a mapping against the live CRMs (``live``) and the
shipped defaults (``default/``). Pure: nothing here calls a CRM or the state.

May import: ``crm_handoff`` and third-party libraries. Never ``sync`` or ``connectors``
(``live`` receives what it checks as plain values).
"""
