"""What the client raises: each carries a message meant for the person who asked."""


class CampaignNotFound(LookupError):
    """No campaign (or audience, sender...) with that id."""


class CampaignRefused(Exception):
    """The rules refuse the action now; the message says why (and what would allow it).

    `invalid_values`: when recipients' template values break SPEC §10's rules, how many
    break each rule and the first rows (`ValuesReport.as_json()`)."""

    def __init__(self, message: str, *, invalid_values: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.invalid_values = invalid_values


class CampaignUnavailable(Exception):
    """The campaign's workflow kept refusing a command for a moment's reasons (a run ending, a
    workflow task being retried, a busy server) longer than the client waits; nothing changed."""
