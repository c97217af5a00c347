"""The sync worker: the cycle's stages, the state, the scheduler and the CLI (``handoff``).

The cycle (``cycle.run_cycle``) runs four stages, each a module with one entry point:
``ingest`` (connectors into the state; who to evaluate), ``evaluate`` (merge, stage,
field sync, qualification, queue), ``plan`` (routing within capacity, streamed from the
queue) and ``execute`` (the only CRM writes; exactly-once tasks in ``tasks``). Pure logic
lives beside them (``qualify``, ``routing``, ``setaside``, ``writes``, ``items``,
``profiles``, ``fieldsync``); I/O in ``state`` (the database) and through the connectors.
See ARCHITECTURE.md.

May import: every other package of ours (``crm_handoff``, ``connectors``, ``mappings``).
Nothing imports ``sync`` but the tests and the bench.
"""
