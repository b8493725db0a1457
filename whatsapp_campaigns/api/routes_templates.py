"""`/templates`: what an account can send, synced from its WhatsApp Business Account."""

import asyncio
import logging

from fastapi import APIRouter

from whatsapp_campaigns.api.dependencies import (
    AccountDep,
    DatabaseDep,
    ProvidersDep,
    SettingsDep,
)
from whatsapp_campaigns.api.schemas import TemplateSyncResult
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.whatsapp import template_sync

log = logging.getLogger(__name__)

router = APIRouter(tags=["templates"])


@router.get("/templates", summary="List message templates")
async def list_templates(db: DatabaseDep, account: AccountDep) -> list[Template]:
    """The account's templates as last synced from WhatsApp, with their approval status."""
    return await asyncio.to_thread(catalog.list_templates, db, account)


@router.post("/templates/sync", summary="Sync templates from WhatsApp")
async def sync_templates(
    db: DatabaseDep, settings: SettingsDep, account: AccountDep, providers: ProvidersDep
) -> TemplateSyncResult:
    """Fetch every template of the account's WhatsApp Business Account and store them;
    templates no longer listed are kept as they were."""
    _, templates = await template_sync.sync_templates(db, settings, account, providers=providers)
    log.info("account %s: %d templates synced", account, len(templates))
    return TemplateSyncResult(synced=len(templates), templates=templates)
