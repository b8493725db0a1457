"""`GET/POST /webhooks/whatsapp`: the WhatsApp Cloud API webhook receiver (SPEC §6 Webhooks).

GET answers Meta's verification handshake. POST checks `X-Hub-Signature-256` over the raw
body, then applies every status and inbound reply of the request in one batch call each, off
the event loop, and answers 200 with a small summary. Payload shapes, from Meta's references:
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/
(statuses: id, status, timestamp, recipient_id, biz_opaque_callback_data, conversation,
pricing, errors[{code, title, message, error_data}]) and
https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/text/
(messages: from, id, timestamp, type, text.body, context{from, id}; contacts[{wa_id}]).
"""

import hmac
import json
import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from whatsapp_campaigns import metrics
from whatsapp_campaigns.api.account_webhooks import (
    TemplateStopped,
    account_changes,
    apply_account_changes,
    pause_campaigns,
)
from whatsapp_campaigns.api.dependencies import ClientHolder
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import connections, status_updates
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.status_updates import AppliedCounts, InboundReply, StatusUpdate
from whatsapp_campaigns.whatsapp.connections import secret_box
from whatsapp_campaigns.whatsapp.inbound import quick_reply_payload
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, is_valid_signature

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks/whatsapp", tags=["webhooks"])

_WEBHOOK_STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
}
# Inbound messages that are notices, not something the user said to us.
_NOT_REPLIES = frozenset({"system"})


@router.get("", response_class=PlainTextResponse)
def verify_subscription(
    request: Request,
    mode: str | None = Query(None, alias="hub.mode"),
    verify_token: str | None = Query(None, alias="hub.verify_token"),
    challenge: str | None = Query(None, alias="hub.challenge"),
) -> PlainTextResponse:
    """Meta's subscription handshake: echo `hub.challenge` when the verify token is ours."""
    expected: str = request.app.state.settings.whatsapp_verify_token
    if (
        mode == "subscribe"
        and challenge is not None
        and verify_token is not None
        and expected
        and hmac.compare_digest(verify_token.encode(), expected.encode())
    ):
        log.info("webhook subscription verified")
        return PlainTextResponse(challenge)
    log.warning("webhook verification refused (hub.mode=%r, token matches: no)", mode)
    return PlainTextResponse("verification refused", status_code=403)


@router.post("")
async def receive(request: Request, background: BackgroundTasks) -> JSONResponse:
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    body = await request.body()  # the raw bytes: the signature covers them, not a re-encoding
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        log.warning("webhook refused: no %s header", SIGNATURE_HEADER)
        return _error(401, "missing signature")
    # is_valid_signature compares str digests, which refuses non-ASCII text with a TypeError.
    if not signature.isascii() or not any(
        is_valid_signature(body, signature, secret) for secret in await _app_secrets(request)
    ):
        log.warning("webhook refused: %s does not sign the body", SIGNATURE_HEADER)
        return _error(403, "invalid signature")
    try:
        payload = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        log.warning("webhook refused: body is not JSON (%d bytes)", len(body))
        return _error(400, "malformed JSON")
    if not isinstance(payload, dict):
        log.warning("webhook refused: body is JSON but not an object")
        return _error(400, "malformed payload")
    changes = account_changes(payload)
    if changes:
        try:
            stopped = await run_in_threadpool(apply_account_changes, db, settings, changes)
        except SQLAlchemyError:
            log.exception("account webhook not applied: store error")
            return _error(503, "store unavailable")
        if stopped:  # Temporal after the answer: Meta is not kept waiting on it
            clients: ClientHolder = request.app.state.campaigns_client
            background.add_task(_pause_campaigns, clients, stopped)
    received_at = datetime.now(UTC)
    parsed = parse_webhook(payload, received_at=received_at)
    for update in parsed.statuses:  # WhatsApp's timestamp -> its arrival here
        metrics.record_webhook_lag((received_at - update.at).total_seconds())
    try:
        statuses, replies = await run_in_threadpool(_apply, db, settings, parsed)
    except SQLAlchemyError:
        # Not a 200: Meta retries the delivery later, and applying it again is harmless.
        log.exception("webhook not applied: store error")
        return _error(503, "store unavailable")
    return JSONResponse(
        {"statuses": asdict(statuses), "replies": asdict(replies), "skipped": parsed.skipped}
    )


@dataclass
class ParsedWebhook:
    statuses: list[StatusUpdate] = field(default_factory=list)
    # Replies by the sender phone number id they were sent to (it tells the account).
    replies: dict[str | None, list[InboundReply]] = field(default_factory=dict)
    skipped: int = 0  # entries we do not handle (unknown statuses, notices, malformed items)


def parse_webhook(payload: dict[str, Any], *, received_at: datetime) -> ParsedWebhook:
    """Walk entry[].changes[].value; anything not understood is skipped, never an error."""
    parsed = ParsedWebhook()
    replies: dict[str | None, list[InboundReply]] = defaultdict(list)
    for entry in _objects(payload.get("entry")):
        for change in _objects(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            sender = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            for item in _objects(value.get("statuses")):
                update = _status_update(item, received_at)
                if update is None:
                    parsed.skipped += 1
                else:
                    parsed.statuses.append(update)
            for item in _objects(value.get("messages")):
                reply = _inbound_reply(item, received_at)
                if reply is None:
                    parsed.skipped += 1
                else:
                    replies[sender if isinstance(sender, str) else None].append(reply)
    parsed.replies = dict(replies)
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


def _apply(
    db: Database, settings: Settings, parsed: ParsedWebhook
) -> tuple[AppliedCounts, AppliedCounts]:
    """The blocking part: statuses first (a reply implies its message was read), then replies,
    one batch per account (a request normally concerns one sender number, so one account)."""
    statuses = status_updates.apply_status_updates(db, parsed.statuses)
    replies = AppliedCounts()
    if not parsed.replies:
        return statuses, replies
    accounts = status_updates.accounts_by_sender(
        db, parsed.replies.keys(), default_account=settings.default_account
    )
    by_account: dict[str | None, list[InboundReply]] = defaultdict(list)
    for sender, sender_replies in parsed.replies.items():
        by_account[accounts[sender]].extend(sender_replies)
    for account_id, account_replies in by_account.items():
        if account_id is None:
            log.warning("%d inbound replies for unknown sender numbers", len(account_replies))
            replies += AppliedCounts(unknown=len(account_replies))
            continue
        replies += status_updates.apply_inbound_replies(db, account_replies, account_id=account_id)
    return statuses, replies


async def _pause_campaigns(clients: "ClientHolder", stopped: list[TemplateStopped]) -> None:
    await pause_campaigns(await clients.get(), stopped)


async def _app_secrets(request: Request) -> list[str]:
    """The secrets a webhook may be signed with: WHATSAPP_APP_SECRET and each account's own
    (stored encrypted; re-read at most once a minute)."""
    settings: Settings = request.app.state.settings
    cache: _SecretsCache = request.app.state.webhook_secrets
    if time.monotonic() - cache.read_at > _SECRETS_REFRESH_SECONDS:
        stored = await run_in_threadpool(
            connections.stored_app_secrets, request.app.state.db, secret_box(settings)
        )
        cache.secrets, cache.read_at = stored, time.monotonic()
    own = [settings.whatsapp_app_secret] if settings.whatsapp_app_secret else []
    return own + [secret for secret in cache.secrets if secret not in own]


@dataclass
class _SecretsCache:
    secrets: list[str] = field(default_factory=list)
    read_at: float = float("-inf")


def new_secrets_cache() -> _SecretsCache:
    return _SecretsCache()


_SECRETS_REFRESH_SECONDS = 60.0


def _error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)
