"""Exceptions of the store: what callers (activities, API, CLI) tell apart and show as is."""

from whatsapp_campaigns.domain.transitions import Refusal


class NotFound(LookupError):
    """No such object; the message names its kind and id: "campaign abc123 not found"."""


class ActionRefused(Exception):
    """The campaign's status (or policy) refuses the action; `str(e)` is the refusal's reason,
    worded for the operator."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class InsufficientCredits(Exception):
    """The account's balance cannot cover a reservation; nothing was changed."""

    def __init__(self, needed: int, available: int) -> None:
        super().__init__(f"not enough credits: {needed} needed, {available} available")
        self.needed = needed
        self.available = available


class InvalidInput(ValueError):
    """A bad argument: an unknown sender, another account's audience, a naive datetime..."""


class Conflict(Exception):
    """The object exists already, or belongs to someone else: "sender X belongs to account B"."""
