"""Campaign and message statuses (SPEC §3) and the rule that message statuses only move forward."""

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_CAMPAIGN_STATUSES


TERMINAL_CAMPAIGN_STATUSES = frozenset(
    {CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELLED}
)


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    RESPONDED = "responded"
    FAILED = "failed"
    INVALID_CONTACT = "invalid_contact"
    BLOCKED = "blocked"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"


# Messages still waiting for an outcome from us or from WhatsApp's API call.
PENDING_MESSAGE_STATUSES = frozenset(
    {MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.RETRYING}
)
# Accepted by WhatsApp: counts towards the "completed" final status (SPEC §4 rule 8).
ACCEPTED_MESSAGE_STATUSES = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.RESPONDED}
)
DELIVERED_MESSAGE_STATUSES = frozenset(
    {MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.RESPONDED}
)
FAILURE_MESSAGE_STATUSES = frozenset(
    {MessageStatus.FAILED, MessageStatus.INVALID_CONTACT, MessageStatus.BLOCKED}
)

# Rank of each status on the forward-only path. A failure ranks just above `sent`: a `failed`
# webhook may replace `sent` but never `delivered`, `read` or `responded` (SPEC §3).
MESSAGE_STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.RETRYING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.FAILED: 3,
    MessageStatus.INVALID_CONTACT: 3,
    MessageStatus.BLOCKED: 3,
    MessageStatus.SUPPRESSED: 3,
    MessageStatus.CANCELLED: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.READ: 5,
    MessageStatus.RESPONDED: 6,
}


def can_advance(current: MessageStatus, new: MessageStatus) -> bool:
    """Whether a message in `current` may move to `new`.

    Forward moves only, so that late, duplicated or reordered updates are harmless; `sending`
    and `retrying` alternate between attempts. A `delivered` or later status still wins over a
    failure we recorded: WhatsApp saying the message arrived is the truth of the matter.
    """
    if new in (MessageStatus.SUPPRESSED, MessageStatus.CANCELLED):
        return current in PENDING_MESSAGE_STATUSES  # only a message never sent is held back
    if {current, new} == {MessageStatus.SENDING, MessageStatus.RETRYING}:
        return True
    return MESSAGE_STATUS_RANK[new] > MESSAGE_STATUS_RANK[current]


def statuses_that_can_become(new: MessageStatus) -> frozenset[MessageStatus]:
    """Every status from which `new` may be reached: the set-based form of `can_advance`,
    for bulk `UPDATE ... WHERE status IN (...)` statements."""
    return frozenset(s for s in MessageStatus if can_advance(s, new))
