"""What the REST routes take from the request: settings, store, account, actor, and the
`CampaignsClient`, built on first use so that /healthz, webhooks and read-only routes never
need Temporal."""

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request

from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.temporal_client import connect


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_account(
    request: Request,
    x_account: Annotated[
        str | None,
        Header(description="The account to act on; CAMPAIGNS_DEFAULT_ACCOUNT when absent."),
    ] = None,
) -> str:
    account = (x_account or "").strip()
    return account or get_settings(request).default_account


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


async def get_campaigns_client(request: Request) -> CampaignsClient:
    holder: ClientHolder = request.app.state.campaigns_client
    return await holder.get()


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_db)]
AccountDep = Annotated[str, Depends(get_account)]
ActorDep = Annotated[str, Depends(get_actor)]
ClientDep = Annotated[CampaignsClient, Depends(get_campaigns_client)]
