"""What the client raises: each carries a message meant for the person who asked."""


class CampaignNotFound(LookupError):
    """No campaign (or audience, sender...) with that id."""


class CampaignRefused(Exception):
    """The rules refuse the action now; the message says why (and what would allow it)."""


class CampaignUnavailable(Exception):
    """The campaign's workflow kept refusing a command for a moment's reasons (a run ending, a
    workflow task being retried, a busy server) longer than the client waits; nothing changed."""
