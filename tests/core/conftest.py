"""Fixtures of the queue-level tests."""

from core.notifications import fx_notifications

__all__ = ["fx_notifications"]
