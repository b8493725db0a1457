"""`GET/POST /webhooks/whatsapp`: the WhatsApp Cloud API webhook receiver (SPEC §6 Webhooks).

GET answers Meta's verification handshake. POST refuses a body over
`CAMPAIGNS_WEBHOOK_MAX_BYTES` (413, before reading it when Content-Length tells, else as soon
as the stream passes the limit), checks `X-Hub-Signature-256` over the raw bytes and that they
are a JSON object, stores them in the inbox and answers 200 once they are committed; the
background applier (`webhook_ingest`) applies them in batches a moment later. Payload shapes:
`whatsapp.webhook_payloads`.

Meta's account webhooks (a number's throughput, a template's status: `account_webhooks`) are
rare and small: they are applied to the store before the 200, and the campaigns of a template
WhatsApp paused are paused right after the answer.
"""

import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from whatsapp_campaigns.api.account_webhooks import (
    TemplateStopped,
    account_changes,
    apply_account_changes,
    pause_campaigns,
)
from whatsapp_campaigns.api.dependencies import ClientHolder
from whatsapp_campaigns.api.webhook_ingest import WebhookIngest
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import connections
from whatsapp_campaigns.whatsapp.connections import secret_box
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, is_valid_signature

log = logging.getLogger(__name__)

PATH = "/webhooks/whatsapp"
router = APIRouter(prefix=PATH, tags=["webhooks"])
_RECEIVED = b'{"received":true}'
_SIGNATURE_KEY = SIGNATURE_HEADER.lower().encode()


def receiver_route() -> Route:
    """The POST route, placed before every other route of the app (`create_app`)."""
    return Route(PATH, WebhookReceiver(), methods=["POST"], name="receive_webhook")


def document_receiver(schema: dict[str, Any]) -> None:
    """Describe the POST in the app's OpenAPI document (a bare route is not in it by itself)."""
    answer: dict[str, Any] = {"content": {"application/json": {}}}
    schema.setdefault("paths", {}).setdefault(PATH, {})["post"] = {
        "tags": ["webhooks"],
        "summary": "Receive WhatsApp webhooks",
        "description": "Meta's signed webhook POST (`X-Hub-Signature-256`), stored durably "
        "before the answer; statuses are applied in batches right after.",
        "operationId": "receive_webhook",
        "requestBody": {"required": True, "content": {"application/json": {}}},
        "responses": {
            "200": {"description": "stored", **answer},
            "400": {"description": "not a JSON object", **answer},
            "401": {"description": "no signature", **answer},
            "403": {"description": "the signature does not match", **answer},
            "413": {"description": "body over CAMPAIGNS_WEBHOOK_MAX_BYTES", **answer},
            "503": {"description": "the store is unavailable: Meta retries", **answer},
        },
    }


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


class WebhookReceiver:
    """`POST /webhooks/whatsapp` as a bare ASGI app (no FastAPI request, dependencies or
    response models on the path that takes thousands of posts a second): size limit, signature,
    JSON object, account changes, then the inbox; answers once stored."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        settings: Settings = app.state.settings
        limit = settings.webhook_max_bytes
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            log.warning("webhook refused: %s bytes declared, over the %d limit", declared, limit)
            return await _answer(send, 413, f"body over {limit} bytes")
        try:
            body = await _read_body(receive, limit)
        except ClientDisconnect:
            return  # nobody to answer
        if body is None:
            return await _answer(send, 413, f"body over {limit} bytes")
        signature = headers.get(_SIGNATURE_KEY, b"").decode("latin-1")
        if not signature:
            log.warning("webhook refused: no %s header", SIGNATURE_HEADER)
            return await _answer(send, 401, "missing signature")
        # is_valid_signature compares str digests, which refuses non-ASCII text with a TypeError.
        if not signature.isascii() or not any(
            is_valid_signature(body, signature, secret) for secret in await _app_secrets(app)
        ):
            log.warning("webhook refused: %s does not sign the body", SIGNATURE_HEADER)
            return await _answer(send, 403, "invalid signature")
        try:
            payload = json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            log.warning("webhook refused: body is not JSON (%d bytes)", len(body))
            return await _answer(send, 400, "malformed JSON")
        if not isinstance(payload, dict):
            log.warning("webhook refused: body is JSON but not an object")
            return await _answer(send, 400, "malformed payload")
        stopped: list[TemplateStopped] = []
        changes = account_changes(payload)
        if changes:
            try:
                stopped = await run_in_threadpool(
                    apply_account_changes, app.state.db, settings, changes
                )
            except SQLAlchemyError:
                log.exception("account webhook not applied: store error")
                return await _answer(send, 503, "store unavailable")
        ingest: WebhookIngest = app.state.webhook_ingest
        try:
            await ingest.receive(body)
        except Exception:
            # Not a 200: Meta retries the delivery later, and applying it twice is harmless.
            log.exception("webhook not stored: store error")
            return await _answer(send, 503, "store unavailable")
        await _send(send, 200, _RECEIVED)
        if stopped:  # Temporal after the answer: Meta is not kept waiting on it
            try:
                await _pause_campaigns(app.state.campaigns_client, stopped)
            except Exception:
                log.exception("campaigns of a paused template not paused")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The raw body (the signature covers these bytes); None as soon as it passes `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()  # the client went away
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            log.warning("webhook refused: body over the %d-byte limit", limit)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _answer(send: Send, status: int, detail: str) -> None:
    await _send(send, status, json.dumps({"detail": detail}).encode())


async def _send(send: Send, status: int, content: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def _pause_campaigns(clients: ClientHolder, stopped: list[TemplateStopped]) -> None:
    await pause_campaigns(await clients.get(), stopped)


async def _app_secrets(app: Starlette) -> list[str]:
    """The secrets a webhook may be signed with: WHATSAPP_APP_SECRET and each account's own
    (stored encrypted; re-read at most once a minute)."""
    settings: Settings = app.state.settings
    cache: _SecretsCache = app.state.webhook_secrets
    if time.monotonic() - cache.read_at > _SECRETS_REFRESH_SECONDS:
        stored = await run_in_threadpool(
            connections.stored_app_secrets, app.state.db, secret_box(settings)
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
