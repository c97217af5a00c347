"""HubSpot API emulator for the demo, integration tests and benchmarks."""

from connectors.hubspot.sandbox.app import HubSpotSandbox
from connectors.hubspot.sandbox.faults import Faults
from connectors.hubspot.sandbox.store import HubSpotError, HubSpotStore
from connectors.hubspot.sandbox.webhooks import Subscription, WebhookSender

__all__ = ["Faults", "HubSpotError", "HubSpotSandbox", "HubSpotStore", "Subscription", "WebhookSender"]
