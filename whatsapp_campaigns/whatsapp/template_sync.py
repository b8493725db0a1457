"""Template sync: copy an account's message templates from its WhatsApp Business Account into
the store's catalog (`campaigns templates sync`, the dev stack at start-up)."""

import asyncio

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.connections import AccountProviders


async def sync_templates(
    db: Database,
    settings: Settings,
    account_id: str,
    *,
    providers: AccountProviders | None = None,
) -> tuple[str, list[Template]]:
    """Fetch every template of the account's WhatsApp Business Account (its connection's, or
    WHATSAPP_BUSINESS_ACCOUNT_ID for the default account) and store them; templates WhatsApp
    no longer lists are kept as they were. Returns the WABA id and the templates. Raises
    `ProviderError` when WhatsApp refuses, `InvalidInput` for an unknown account."""
    own = providers is None
    source = providers if providers is not None else AccountProviders(settings, db)
    try:
        connection = await source.connection(account_id)
        templates = await connection.provider.list_templates(connection.waba_id)
    finally:
        if own:
            await source.aclose()
    await asyncio.to_thread(catalog.upsert_templates, db, account_id, templates)
    return connection.waba_id, templates
