"""Salesforce through ``simple-salesforce`` (REST, Composite, Bulk API 2.0): people,
users, activity, tasks, install (``connector``), authentication (``auth``), error
classification (``errors``), outcome read-back (``outcomes``) and the sandbox (``sandbox``).

May import: ``crm_handoff``, ``connectors`` (its shared modules) and the SDK.
"""
