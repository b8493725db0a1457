"""What the client raises: both carry a message meant for the person who asked."""


class CampaignNotFound(LookupError):
    """No campaign (or audience, sender...) with that id."""


class CampaignRefused(Exception):
    """The rules refuse the action now; the message says why (and what would allow it)."""
