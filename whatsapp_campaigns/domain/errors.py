"""Error classes of WhatsApp send failures (SPEC §4 rule 6) and what each one means for a message.

The WhatsApp client maps provider error codes to these classes; the engine turns a class into
a Temporal retry decision; the store turns a final class into a message status.
"""

from enum import StrEnum

from whatsapp_campaigns.domain.statuses import MessageStatus


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # 5xx, timeouts, temporary errors: quick exponential backoff
    THROUGHPUT_LIMITED = "throughput_limited"  # per-number / app rate limit: seconds, slow down
    PAIR_LIMITED = "pair_limited"  # too many messages to one recipient: minutes
    MESSAGING_LIMITED = "messaging_limited"  # tier or spam rate limit: 12 h, throttle the sender
    INVALID_CONTACT = "invalid_contact"  # not a WhatsApp user / bad number
    BLOCKED = "blocked"  # blocked or reported as spam
    TEMPLATE = "template"  # template missing, not approved, paused, parameter mismatch
    POLICY = "policy"  # business policy / re-engagement rules
    AUTH = "auth"  # access token problems: stops the campaign
    ACCOUNT = "account"  # account restricted, payment, sender unusable: stops the campaign
    FAILED = "failed"  # generic or unknown

    @property
    def is_retryable(self) -> bool:
        return self in RETRYABLE_ERROR_CLASSES

    @property
    def stops_campaign(self) -> bool:
        """Every further send would fail the same way: the campaign stops with the reason."""
        return self in (ErrorClass.AUTH, ErrorClass.ACCOUNT)

    @property
    def final_message_status(self) -> MessageStatus:
        """The message status once this error is the final outcome of the message."""
        return FINAL_STATUS_BY_ERROR_CLASS.get(self, MessageStatus.FAILED)


RETRYABLE_ERROR_CLASSES = frozenset(
    {
        ErrorClass.TRANSIENT,
        ErrorClass.THROUGHPUT_LIMITED,
        ErrorClass.PAIR_LIMITED,
        ErrorClass.MESSAGING_LIMITED,
        ErrorClass.FAILED,
    }
)

# "Blocked or spam: the contact has blocked or reported you, or you have reached your WhatsApp
# messaging limits" (seed 001), hence messaging_limited ends as `blocked` when attempts run out.
FINAL_STATUS_BY_ERROR_CLASS: dict[ErrorClass, MessageStatus] = {
    ErrorClass.INVALID_CONTACT: MessageStatus.INVALID_CONTACT,
    ErrorClass.BLOCKED: MessageStatus.BLOCKED,
    ErrorClass.MESSAGING_LIMITED: MessageStatus.BLOCKED,
}
