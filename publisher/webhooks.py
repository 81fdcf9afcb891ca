"""Old import paths, kept for code written before each provider's module held its own
webhook (publisher/providers/) and the shared parts moved to publisher/providers/webhook.py.

`<PROVIDER>_<CONSTANT>` names (a webhook's tolerance, its key's environment variable) are
looked up in that provider's module.
"""

from __future__ import annotations

from typing import Any

from .providers import provider_constant
from .providers.webhook import MAX_DEPTH, Event, WebhookError, json_depth, read_json

__all__ = ["MAX_DEPTH", "Event", "WebhookError", "json_depth", "read_json"]


def __getattr__(name: str) -> Any:
    """A provider's constant under its old name, <PROVIDER>_<CONSTANT>."""
    return provider_constant(name)
