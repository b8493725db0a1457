"""Reading the WhatsApp Cloud API's webhook payloads (SPEC §6 Webhooks).

A payload is `entry[].changes[]`, each change a `field` (what it is about) and a `value`. The
`messages` field carries statuses and inbound messages; shapes from Meta's references:
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/
(statuses: id, status, timestamp, recipient_id, biz_opaque_callback_data, conversation,
pricing, errors[{code, title, message, error_data}]) and
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/text/
(messages: from, id, timestamp, type, text.body, context{from, id}; contacts[{wa_id}]).
Anything not understood is skipped and counted, never an error.
"""

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store.status_updates import InboundReply, StatusUpdate
from whatsapp_campaigns.whatsapp.inbound import quick_reply_payload

log = logging.getLogger(__name__)

MESSAGES_FIELD = "messages"

_WEBHOOK_STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
# Inbound messages that are notices, not something the user said to us.
_NOT_REPLIES = frozenset({"system"})


def changes(payload: Any) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(field, value) of every change of the payload, in order."""
    if not isinstance(payload, dict):
        return
    for entry in _objects(payload.get("entry")):
        for change in _objects(entry.get("changes")):
            value = change.get("value")
            name = change.get("field")
            if isinstance(value, dict):
                yield (name if isinstance(name, str) else None), value


@dataclass
class ParsedMessages:
    """Statuses and replies of `messages` changes."""

    statuses: list[StatusUpdate] = field(default_factory=list)
    # Replies by the sender phone number id they were sent to (it tells the account).
    replies: dict[str | None, list[InboundReply]] = field(default_factory=lambda: defaultdict(list))
    skipped: int = 0  # entries we do not handle (unknown statuses, notices, malformed items)


def parse_messages_value(
    value: dict[str, Any], *, received_at: datetime, into: ParsedMessages
) -> None:
    """Add the statuses and replies of one `messages` change's value to `into`."""
    metadata = value.get("metadata")
    sender = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    for item in _objects(value.get("statuses")):
        update = _status_update(item, received_at)
        if update is None:
            into.skipped += 1
        else:
            into.statuses.append(update)
    for item in _objects(value.get("messages")):
        reply = _inbound_reply(item, received_at)
        if reply is None:
            into.skipped += 1
        else:
            into.replies[sender if isinstance(sender, str) else None].append(reply)


def parse_webhook(payload: dict[str, Any], *, received_at: datetime) -> ParsedMessages:
    """The statuses and replies of every `messages` change of one payload."""
    parsed = ParsedMessages()
    for name, value in changes(payload):
        if name == MESSAGES_FIELD:
            parse_messages_value(value, received_at=received_at, into=parsed)
    return parsed


def _status_update(item: dict[str, Any], received_at: datetime) -> StatusUpdate | None:
    provider_id, raw_status = item.get("id"), item.get("status")
    status = _WEBHOOK_STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    if not isinstance(provider_id, str) or status is None:
        log.info("webhook status %r for %r ignored", raw_status, provider_id)
        return None
    callback_data = item.get("biz_opaque_callback_data")
    code = title = None
    errors = _objects(item.get("errors"))
    if errors:
        raw_code = errors[0].get("code")
        code = raw_code if isinstance(raw_code, int) else None
        raw_title = errors[0].get("title") or errors[0].get("message")
        title = str(raw_title) if raw_title is not None else None
    return StatusUpdate(
        provider_message_id=provider_id,
        status=status,
        at=_timestamp(item.get("timestamp"), received_at),
        biz_opaque_callback_data=callback_data if isinstance(callback_data, str) else None,
        error_code=code,
        error_title=title,
    )


def _inbound_reply(item: dict[str, Any], received_at: datetime) -> InboundReply | None:
    sender, kind = item.get("from"), item.get("type")
    if kind in _NOT_REPLIES or not isinstance(sender, str) or not sender.isdigit():
        log.info("inbound message of type %r ignored", kind)
        return None
    context = item.get("context")
    context_id = context.get("id") if isinstance(context, dict) else None
    if kind == "reaction":  # a reaction names the message it reacts to, not a context
        context_id = _field(item, "reaction", "message_id")
    return InboundReply(
        from_phone_e164=f"+{sender}",  # WhatsApp sends the number as digits, without the "+"
        text=_reply_text(item),
        at=_timestamp(item.get("timestamp"), received_at),
        context_provider_message_id=context_id if isinstance(context_id, str) else None,
        payload=quick_reply_payload(item),
    )


def _reply_text(item: dict[str, Any]) -> str:
    """What the user said: typed text, a template's quick-reply button, or an interactive
    choice (a "Stop promotions" button must opt out like a typed STOP)."""
    for path in (
        ("text", "body"),
        ("button", "text"),
        ("interactive", "button_reply", "title"),
        ("interactive", "list_reply", "title"),
    ):
        text = _field(item, *path)
        if isinstance(text, str):
            return text
    return ""


def _field(item: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _timestamp(value: Any, default: datetime) -> datetime:
    """WhatsApp's timestamps are Unix seconds as strings."""
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return default
