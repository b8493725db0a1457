"""What the REST routes take from the request: settings, store, the account the API key acts
on, the actor, each account's WhatsApp connection, and the `CampaignsClient`, built on first
use so that /healthz, webhooks and read-only routes never need Temporal."""

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request

from whatsapp_campaigns.api.auth import acting_account
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.temporal_client import connect
from whatsapp_campaigns.whatsapp.connections import AccountProviders


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_actor(
    x_actor: Annotated[
        str | None,
        Header(description="Who acts (a user name or service), recorded in the timeline."),
    ] = None,
) -> str:
    return (x_actor or "").strip()[:200] or "api"


class ClientHolder:
    """Builds the app's `CampaignsClient` once, on first use. The Temporal connection is lazy
    too: a draft can be created while Temporal is restarting; only the actions that talk to a
    workflow need it (and answer 503 while it is out of reach)."""

    def __init__(self, settings: Settings, db: Database, client: CampaignsClient | None) -> None:
        self._settings = settings
        self._db = db
        self._client = client
        self._owned = client is None  # a client given to create_app is its caller's to close
        self._lock = asyncio.Lock()

    async def get(self) -> CampaignsClient:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    temporal = await connect(self._settings, lazy=True)
                    self._client = CampaignsClient(temporal, self._db, self._settings)
        return self._client

    async def close(self) -> None:
        if self._owned and self._client is not None:
            await self._client.close()


def get_providers(request: Request) -> AccountProviders:
    providers: AccountProviders = request.app.state.providers
    return providers


async def get_campaigns_client(request: Request) -> CampaignsClient:
    holder: ClientHolder = request.app.state.campaigns_client
    return await holder.get()


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_db)]
# The account the request acts on, decided by the API key (SPEC §9).
AccountDep = Annotated[str, Depends(acting_account)]
ActorDep = Annotated[str, Depends(get_actor)]
ClientDep = Annotated[CampaignsClient, Depends(get_campaigns_client)]
ProvidersDep = Annotated[AccountProviders, Depends(get_providers)]
