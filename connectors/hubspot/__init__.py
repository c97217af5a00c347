"""HubSpot through the official ``hubspot-api-client``: people, owners, activity, tasks,
install (``connector``), authentication (``auth``), dated API paths from HubSpot's
published specs (``paths``), outcome read-back (``outcomes``) and the sandbox (``sandbox``).

May import: ``crm_handoff``, ``connectors`` (its shared modules) and the SDK.
"""
