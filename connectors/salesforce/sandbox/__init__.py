"""A stateful Salesforce REST API emulator (HTTPS on loopback) for demos, tests and benchmarks."""

from .app import SalesforceSandbox
from .faults import Faults
from .store import RecordError, SalesforceStore

__all__ = ["Faults", "RecordError", "SalesforceSandbox", "SalesforceStore"]
