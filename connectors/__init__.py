"""One package per CRM, each owning every call to its CRM through the official SDK.

Holds the seam the sync worker talks through (``base.Connector``, a Protocol), the retry
policy both connectors share (``retry``), network-failure classification (``network``)
and one package per CRM (``hubspot``, ``salesforce``), each with its sandbox: a real HTTP
server on loopback speaking that CRM's documented wire format, used by the tests, the
bench and ``handoff demo``.

May import: ``crm_handoff`` and third-party libraries (the CRMs' SDKs). Never ``sync`` or
``mappings``: what a connector needs of the mapping is passed in as plain values.
"""
