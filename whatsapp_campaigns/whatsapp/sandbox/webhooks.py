"""Status and inbound-message webhooks as Meta posts them, and where the sandbox sends them.

Shapes: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components
(`entry[].changes[].value` with `metadata`, `statuses[]` or `messages[]` + `contacts[]`).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

# Webhook POSTs in flight at once from one sandbox; the rest wait their turn.
WEBHOOK_CONNECTIONS = 8
# Meta retries a webhook its receiver did not take for days; the sandbox's bounded sink keeps
# trying for about a minute (0.5, 1, 2, 4, then every 5 s), long enough to outlast an API
# restart, so that a restart does not lose the statuses posted meanwhile.
WEBHOOK_ATTEMPTS = 16
WEBHOOK_MAX_BACKOFF = 5.0


class WebhookSink(Protocol):
    """Where the sandbox delivers a webhook POST: its raw body and headers (signature included)."""

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None: ...


class CallbackWebhookSink:
    """In-process delivery: hands each webhook to `fn` (for example an ASGI test client)."""

    def __init__(self, fn: Callable[[bytes, dict[str, str]], Awaitable[None]]) -> None:
        self._fn = fn

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        await self._fn(body, headers)


class HttpWebhookSink:
    """POSTs each webhook to `url`, signed with `app_secret`, retrying a few times like Meta."""

    def __init__(
        self,
        url: str,
        app_secret: str,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self._app_secret = app_secret
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        signed = headers | {SIGNATURE_HEADER: sign(body, self._app_secret)}
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.post(self.url, content=body, headers=signed)
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}"
            if attempt == self._attempts:
                log.warning(
                    "webhook to %s dropped after %d attempts: %s", self.url, attempt, problem
                )
                return
            log.info("webhook to %s failed (%s), retrying", self.url, problem)
            wait = self._backoff * 2 ** (attempt - 1)
            await asyncio.sleep(min(wait, self._max_backoff or wait))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


class BoundedHttpWebhookSink:
    """The sandbox's webhooks over a few keep-alive connections, the other posts waiting their
    turn here, each retried for about a minute as Meta would (WEBHOOK_ATTEMPTS). (httpx's own
    pool scans every connection and every waiting request on each request: with hundreds of
    webhooks a second in flight that scan took most of the process's CPU, and the demo sent at
    a third of the sender's rate.) Both the dev stack and the
    standalone `campaigns sandbox` server post through it."""

    def __init__(
        self,
        url: str,
        app_secret: str,
        *,
        connections: int = WEBHOOK_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connections = connections
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(limits=limits, timeout=10.0, transport=transport)
        self._sink = HttpWebhookSink(
            url,
            app_secret,
            attempts=WEBHOOK_ATTEMPTS,
            max_backoff=WEBHOOK_MAX_BACKOFF,
            client=self._client,
        )
        self._slots = asyncio.Semaphore(connections)

    @property
    def url(self) -> str:
        return self._sink.url

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        async with self._slots:
            await self._sink.deliver(body, headers)

    async def aclose(self) -> None:
        await self._client.aclose()


def webhook_body(
    *,
    business_account_id: str,
    phone_number_id: str,
    display_number: str,
    value: dict[str, Any],
) -> dict[str, Any]:
    """The envelope around one change of the `messages` field."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": business_account_id,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": display_number.lstrip("+"),
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def status_item(
    *,
    message_id: str,
    status: str,
    timestamp: int,
    recipient_id: str,
    biz_opaque_callback_data: str | None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One entry of `value.statuses`: sent, delivered, read or failed (with its errors)."""
    item: dict[str, Any] = {
        "id": message_id,
        "status": status,
        "timestamp": str(timestamp),
        "recipient_id": recipient_id,
    }
    if biz_opaque_callback_data:
        item["biz_opaque_callback_data"] = biz_opaque_callback_data
    if errors:
        item["errors"] = errors
    return item


def inbound_text_value(
    *,
    message_id: str,
    sender_wa_id: str,
    timestamp: int,
    text: str,
    context_id: str | None,
    business_number: str,
) -> dict[str, Any]:
    """`value` of an inbound text message from `sender_wa_id`, replying to `context_id`."""
    message: dict[str, Any] = {
        "from": sender_wa_id,
        "id": message_id,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": text},
    }
    if context_id:
        message["context"] = {"from": business_number.lstrip("+"), "id": context_id}
    return {
        "contacts": [{"profile": {"name": "Sandbox user"}, "wa_id": sender_wa_id}],
        "messages": [message],
    }
