"""Which WhatsApp connection each account talks through (SPEC §9).

An account with a stored connection calls the Graph API with its own access token and WhatsApp
Business Account; the default account without one uses the `WHATSAPP_*` settings, so set-ups
from before accounts existed keep working. With the in-process sandbox
(`CAMPAIGNS_PROVIDER=sandbox`), or a provider handed in by a test, every account shares it.

Tokens are re-read from the store at most once a minute, so a new token (`accounts connect`)
reaches running workers without a restart. Every account's `CloudApiProvider` shares one
pooled HTTP client.
"""

import asyncio
import time
from dataclasses import dataclass

import httpx

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.tenancy import WhatsAppCredentials
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import connections
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.secrets import SecretBox
from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider, pooled_client
from whatsapp_campaigns.whatsapp.factory import make_provider
from whatsapp_campaigns.whatsapp.provider import Provider, ProviderError

REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class AccountConnection:
    provider: Provider
    waba_id: str  # the WhatsApp Business Account whose templates the account uses


class AccountProviders:
    def __init__(self, settings: Settings, db: Database, *, shared: Provider | None = None) -> None:
        """`shared`: one provider for every account (tests, the in-process sandbox)."""
        self._settings = settings
        self._db = db
        self._box = secret_box(settings)
        if shared is None and settings.provider == "sandbox":
            shared = make_provider(settings)
        self._shared = shared
        self._http: httpx.AsyncClient | None = None
        self._cache: dict[str, tuple[float, WhatsAppCredentials | None, AccountConnection]] = {}
        self._lock = asyncio.Lock()

    async def connection(self, account_id: str) -> AccountConnection:
        cached = self._cache.get(account_id)
        if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return cached[2]
        async with self._lock:
            cached = self._cache.get(account_id)  # read by a caller that held the lock first
            if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
                return cached[2]
            credentials = await asyncio.to_thread(
                connections.get_credentials, self._db, self._box, account_id
            )
            if cached is not None and cached[1] == credentials:
                connection = cached[2]  # same token: keep the provider (and its pool slots)
            else:
                connection = self._connect(account_id, credentials)
            self._cache[account_id] = (time.monotonic(), credentials, connection)
            return connection

    async def provider(self, account_id: str) -> Provider:
        return (await self.connection(account_id)).provider

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()
        if self._http is not None:
            await self._http.aclose()

    def _connect(
        self, account_id: str, credentials: WhatsAppCredentials | None
    ) -> AccountConnection:
        settings = self._settings
        if credentials is None and account_id != settings.default_account:
            if self._shared is not None:
                return AccountConnection(self._shared, settings.whatsapp_business_account_id)
            raise ProviderError(
                ErrorClass.AUTH,
                f"account {account_id} has no WhatsApp connection: "
                f"run `campaigns accounts connect {account_id}`",
            )
        waba_id = credentials.waba_id if credentials else settings.whatsapp_business_account_id
        if self._shared is not None:
            return AccountConnection(self._shared, waba_id)
        token = credentials.access_token if credentials else settings.whatsapp_access_token
        if self._http is None:
            self._http = pooled_client()
        provider = CloudApiProvider(
            settings.whatsapp_api_base_url, settings.whatsapp_api_version, token, client=self._http
        )
        return AccountConnection(provider, waba_id)


async def verify_connection(settings: Settings, waba_id: str, access_token: str) -> int:
    """Check a token before it is stored: read the WhatsApp Business Account's templates
    with it. Returns how many there are; `ProviderError` (Meta's code and title) when Meta
    refuses the token or the account id."""
    provider: Provider
    if settings.provider == "sandbox":
        provider = make_provider(settings)
    else:
        provider = CloudApiProvider(
            settings.whatsapp_api_base_url, settings.whatsapp_api_version, access_token
        )
    try:
        return len(await provider.list_templates(waba_id))
    finally:
        await provider.aclose()


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_key.get_secret_value())
