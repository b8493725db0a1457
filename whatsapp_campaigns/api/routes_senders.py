"""`/senders`: the account's WhatsApp numbers, read from Meta (SPEC §9)."""

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends

from whatsapp_campaigns.api.dependencies import AccountDep, DatabaseDep, ProvidersDep
from whatsapp_campaigns.api.schemas import SenderAdd
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound

log = logging.getLogger(__name__)

router = APIRouter(prefix="/senders", tags=["senders"])


async def _owned_sender(phone_number_id: str, db: DatabaseDep, account: AccountDep) -> Sender:
    """The account's own number; another account's answers 404, like an unknown one."""
    sender = await asyncio.to_thread(catalog.get_sender, db, phone_number_id)
    if sender.account_id != account or sender.removed_at is not None:
        raise NotFound(f"sender {phone_number_id} not found")
    return sender


OwnedSender = Annotated[Sender, Depends(_owned_sender)]


@router.get("", summary="List sender phone numbers")
async def list_senders(db: DatabaseDep, account: AccountDep) -> list[Sender]:
    """The account's numbers: rate (messages/s), throughput level, tier, quality, throttle."""
    return await asyncio.to_thread(catalog.list_senders, db, account)


@router.post("", summary="Add a sender number")
async def add_sender(
    body: SenderAdd, db: DatabaseDep, account: AccountDep, providers: ProvidersDep
) -> Sender:
    """Read the number from Meta with the account's connection and store it; its rate follows
    its throughput level (STANDARD 80, HIGH 1,000), capped by `rate`."""
    provider = await providers.provider(account)
    info = await provider.get_phone_number(body.phone_number_id)
    sender = await asyncio.to_thread(catalog.register_sender, db, account, info, rate_cap=body.rate)
    log.info("account %s: sender %s added", account, sender.phone_number_id)
    return sender


@router.post("/{phone_number_id}/sync", summary="Re-read a number from Meta")
async def sync_sender(
    sender: OwnedSender, db: DatabaseDep, account: AccountDep, providers: ProvidersDep
) -> Sender:
    provider = await providers.provider(account)
    info = await provider.get_phone_number(sender.phone_number_id)
    return await asyncio.to_thread(
        catalog.register_sender, db, account, info, rate_cap=sender.rate_cap
    )


@router.delete("/{phone_number_id}", summary="Remove a sender number")
async def remove_sender(sender: OwnedSender, db: DatabaseDep) -> Sender:
    """Refused (409) while a campaign that has not finished uses it."""
    return await asyncio.to_thread(_remove, db, sender.phone_number_id)


def _remove(db: Database, phone_number_id: str) -> Sender:
    removed = catalog.remove_sender(db, phone_number_id)
    log.info("sender %s removed from %s", phone_number_id, removed.account_id)
    return removed
