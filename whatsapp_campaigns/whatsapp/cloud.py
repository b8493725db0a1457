"""`CloudApiProvider`: the `Provider` protocol over the WhatsApp Business Cloud API (Graph API).

Send: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages
Phone numbers: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/phone-numbers
Templates: https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/message_templates
"""

import asyncio
import logging
from typing import Any

import httpx

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend
from whatsapp_campaigns.whatsapp.wire import (
    PHONE_NUMBER_FIELDS,
    message_id_from_response,
    next_page_cursor,
    phone_number_from_response,
    provider_error,
    send_request_body,
    template_from_json,
)

log = logging.getLogger(__name__)

# Sized for ~100 sends in flight per process: at Meta's ~100-300 ms per call that carries a
# few hundred messages/s (the sender's rate, up to 1,000, is paced by the engine, not here).
MAX_CONNECTIONS = 100
TEMPLATE_PAGE_SIZE = 100


class CloudApiProvider:
    """One pooled HTTP/1.1 keep-alive client per instance; `aclose()` releases it."""

    def __init__(
        self,
        base_url: str,
        api_version: str,
        access_token: str,
        *,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._root = f"{base_url.rstrip('/')}/{api_version.strip('/')}"
        # No token, no header: Meta then answers its own auth error (190), classified `auth`.
        self._headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
        self._owns_client = client is None
        self._client = client or pooled_client(timeout)
        # Callers beyond the pool wait here rather than in httpcore's pool queue, whose cost
        # grows with its length (quadratic under a burst of sends), and whose pool timeout
        # would turn "not sent yet" into a failure.
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def send_template(self, message: TemplateSend) -> str:
        url = f"{self._root}/{message.sender_phone_number_id}/messages"
        response = await self._request("POST", url, json=send_request_body(message))
        return message_id_from_response(response.status_code, _json(response))

    async def list_templates(self, business_account_id: str) -> list[Template]:
        url = f"{self._root}/{business_account_id}/message_templates"
        templates: list[Template] = []
        params: dict[str, str | int] = {"limit": TEMPLATE_PAGE_SIZE}
        while True:
            response = await self._request("GET", url, params=params)
            payload = _json(response)
            if response.status_code != 200 or not isinstance(payload, dict):
                raise provider_error(response.status_code, payload)
            for item in payload.get("data") or []:
                if isinstance(item, dict) and item.get("name"):
                    templates.append(template_from_json(item))
            after = next_page_cursor(payload)
            if after is None:
                return templates
            params = {"limit": TEMPLATE_PAGE_SIZE, "after": after}

    async def get_phone_number(self, phone_number_id: str) -> PhoneNumberInfo:
        url = f"{self._root}/{phone_number_id}"
        response = await self._request("GET", url, params={"fields": PHONE_NUMBER_FIELDS})
        return phone_number_from_response(response.status_code, _json(response), phone_number_id)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """The answer, whatever its status; no answer at all is a transient ProviderError with
        no HTTP status (the send may or may not have reached WhatsApp)."""
        try:
            async with self._slots:
                return await self._client.request(method, url, headers=self._headers, **kwargs)
        except httpx.TimeoutException as error:
            raise ProviderError(
                ErrorClass.TRANSIENT, f"WhatsApp did not answer in time ({type(error).__name__})"
            ) from error
        except httpx.TransportError as error:
            raise ProviderError(
                ErrorClass.TRANSIENT, f"could not reach WhatsApp ({type(error).__name__}: {error})"
            ) from error


def pooled_client(timeout: float = 10.0) -> httpx.AsyncClient:
    """The keep-alive HTTP/1.1 pool for Graph API calls (shareable by several providers)."""
    return httpx.AsyncClient(
        http2=False,
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_CONNECTIONS,
            keepalive_expiry=30.0,
        ),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
    )


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        log.warning("WhatsApp answered HTTP %d with a body that is not JSON", response.status_code)
        return None
