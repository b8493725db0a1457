"""`/templates` and `/senders`: what an account can send, and from which numbers."""

import asyncio
import logging

from fastapi import APIRouter

from whatsapp_campaigns.api.dependencies import AccountDep, DatabaseDep, SettingsDep
from whatsapp_campaigns.api.schemas import TemplateSyncResult
from whatsapp_campaigns.domain.models import Sender, Template
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.whatsapp.factory import make_provider

log = logging.getLogger(__name__)

router = APIRouter(tags=["templates"])


@router.get("/templates", summary="List message templates")
async def list_templates(db: DatabaseDep, account: AccountDep) -> list[Template]:
    """The account's templates as last synced from WhatsApp, with their approval status."""
    return await asyncio.to_thread(catalog.list_templates, db, account)


@router.post("/templates/sync", summary="Sync templates from WhatsApp")
async def sync_templates(
    db: DatabaseDep, settings: SettingsDep, account: AccountDep
) -> TemplateSyncResult:
    """Fetch every template of the business account (WHATSAPP_BUSINESS_ACCOUNT_ID) from the
    provider and store them for the account; templates no longer listed are kept as they were."""
    provider = make_provider(settings)
    try:
        templates = await provider.list_templates(settings.whatsapp_business_account_id)
    finally:
        await provider.aclose()
    synced = await asyncio.to_thread(catalog.upsert_templates, db, account, templates)
    log.info("account %s: %d templates synced", account, synced)
    return TemplateSyncResult(synced=synced, templates=templates)


@router.get("/senders", summary="List sender phone numbers", tags=["senders"])
async def list_senders(db: DatabaseDep, account: AccountDep) -> list[Sender]:
    """The account's WhatsApp sender numbers, their rate (messages/s), tier and throttle."""
    return await asyncio.to_thread(catalog.list_senders, db, account)
