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

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

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

router = APIRouter(prefix="/webhooks/whatsapp", tags=["webhooks"])
_RECEIVED = b'{"received":true}'


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
async def receive(request: Request, background: BackgroundTasks) -> Response:
    settings: Settings = request.app.state.settings
    ingest: WebhookIngest = request.app.state.webhook_ingest
    limit = settings.webhook_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        log.warning("webhook refused: %s bytes declared, over the %d limit", declared, limit)
        return _error(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # the raw bytes: the signature covers them
        size += len(chunk)
        if size > limit:
            log.warning("webhook refused: body over the %d-byte limit", limit)
            return _error(413, f"body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
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
            stopped = await run_in_threadpool(
                apply_account_changes, request.app.state.db, settings, changes
            )
        except SQLAlchemyError:
            log.exception("account webhook not applied: store error")
            return _error(503, "store unavailable")
        if stopped:  # Temporal after the answer: Meta is not kept waiting on it
            clients: ClientHolder = request.app.state.campaigns_client
            background.add_task(_pause_campaigns, clients, stopped)
    try:
        await ingest.receive(body)
    except Exception:
        # Not a 200: Meta retries the delivery later, and applying it twice is harmless.
        log.exception("webhook not stored: store error")
        return _error(503, "store unavailable")
    return Response(_RECEIVED, media_type="application/json")


async def _pause_campaigns(clients: ClientHolder, stopped: list[TemplateStopped]) -> None:
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
