"""Template sync: copy the business account's message templates from the provider into the
store's catalog (`campaigns templates sync`, the dev stack at start-up)."""

import asyncio

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.factory import make_provider
from whatsapp_campaigns.whatsapp.provider import Provider


async def sync_templates(
    db: Database,
    settings: Settings,
    account_id: str,
    *,
    provider: Provider | None = None,
) -> list[Template]:
    """Fetch every template of WHATSAPP_BUSINESS_ACCOUNT_ID and store them for `account_id`
    (templates the provider no longer lists are kept as they were). Raises `ProviderError`
    when WhatsApp refuses, `InvalidInput` for an unknown account."""
    own = provider is None
    source = provider if provider is not None else make_provider(settings)
    try:
        templates = await source.list_templates(settings.whatsapp_business_account_id)
    finally:
        if own:
            await source.aclose()
    await asyncio.to_thread(catalog.upsert_templates, db, account_id, templates)
    return templates
