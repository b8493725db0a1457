"""Per-campaign policy: every default of SPEC §4, overridable per campaign."""

from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from whatsapp_campaigns.domain.errors import ErrorClass

# SPEC §4 rule 10: the replies that opt a number out, unless a campaign's policy names its own
# (`stop_keywords`, which replaces this list). Also used for a reply that answers no campaign
# message. Compared with `normalize_keyword`: any case, any whitespace around and between words.
DEFAULT_STOP_KEYWORDS = ("STOP", "UNSUBSCRIBE", "STOP ALL", "OPT OUT")


def normalize_keyword(text: str) -> str:
    """A reply or keyword as compared: case folded, whitespace trimmed, inner runs of spaces,
    tabs or newlines counted as one space ("  Stop\tall " is "STOP ALL")."""
    return " ".join(text.split()).casefold()


def matching_stop_keyword(text: str, keywords: Iterable[str]) -> str | None:
    """The keyword (as listed) that the whole reply `text` is, or None: a reply that merely
    mentions one ("don't stop") is not an opt-out."""
    wanted = normalize_keyword(text)
    return next((k for k in keywords if normalize_keyword(k) == wanted), None)


class SuccessCriterion(StrEnum):
    SENT = "sent"  # completed when at least one message was accepted by WhatsApp
    DELIVERED = "delivered"  # completed when at least one message was delivered


class CampaignPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Rule 2: cancelling a scheduled campaign closes this long before its send time.
    cancel_cutoff: timedelta = timedelta(minutes=5)
    # Rule 2: some vendors refuse cancel once the campaign is queued/sending/paused.
    lock_when_sending: bool = False
    # Rule 6: per-message retries.
    max_attempts: int = Field(default=3, ge=1, le=10)
    transient_initial_backoff: timedelta = timedelta(seconds=1)
    transient_max_backoff: timedelta = timedelta(seconds=30)
    throughput_backoff: timedelta = timedelta(seconds=5)
    # How long the campaign's own dispatch slows down after a throughput-limit error.
    throughput_slowdown: timedelta = timedelta(seconds=30)
    pair_limit_backoff: timedelta = timedelta(minutes=2)
    messaging_limit_backoff: timedelta = timedelta(hours=12)
    # Rule 7: sending lasts at most this long; what is left becomes `failed` (deadline).
    sending_deadline: timedelta = timedelta(days=3)
    # Rule 8: final status.
    success_on: SuccessCriterion = SuccessCriterion.SENT
    delivery_window: timedelta = timedelta(hours=1)
    # Rule 9: auto-pause guard.
    auto_pause_enabled: bool = True
    auto_pause_min_sends: int = Field(default=100, ge=1)
    auto_pause_failure_rate: float = Field(default=0.05, gt=0, le=1)
    # SPEC §10: send to the recipients whose template values pass the checks, and mark the
    # others `failed` with the reason, instead of refusing the whole campaign.
    skip_invalid: bool = False
    # SPEC §11: this campaign's share of its number against the other campaigns sending on
    # it at the same priority: its part of the number's in-flight window is its weight over
    # the sum of theirs (workflows/dispatch.py `send_window`; equal shares by default).
    weight: float = Field(default=1.0, gt=0, le=1000)
    # How many child workflows send the campaign's messages, each a K-th of them (docs/
    # scaling.md: one workflow carries a standard number; a 1,000 msg/s number on a real
    # cluster needs about one per 150 msg/s). 1: the campaign workflow sends them itself.
    send_partitions: int = Field(default=1, ge=1, le=32)
    # Rule 10: inbound replies that opt a number out.
    stop_keywords: tuple[str, ...] = DEFAULT_STOP_KEYWORDS

    def retry_delay(self, error_class: ErrorClass) -> timedelta | None:
        """The wait before the next attempt after `error_class`; None means the retry
        policy's own exponential backoff (transient and generic failures)."""
        return {
            ErrorClass.THROUGHPUT_LIMITED: self.throughput_backoff,
            ErrorClass.PAIR_LIMITED: self.pair_limit_backoff,
            ErrorClass.MESSAGING_LIMITED: self.messaging_limit_backoff,
        }.get(error_class)

    def stop_keyword(self, text: str) -> str | None:
        """The policy's STOP keyword that the reply `text` is, or None."""
        return matching_stop_keyword(text, self.stop_keywords)
