"""crm-handoff's shared vocabulary, below every other package.

Holds what the connectors, the mapping files and the sync worker all speak: the canonical
records that cross the connector seam (``records``), the error tree with its exit codes
(``errors``) and the clock a cycle runs on (``clock``).

May import: the standard library only. Imported by: ``connectors``, ``mappings``, ``sync``
(and the tests and bench). Nothing here imports them.
"""
