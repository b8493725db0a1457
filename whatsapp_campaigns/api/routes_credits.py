"""`/credits`: the account's balance, its ledger, and top-ups (SPEC §4 rule 4)."""

import asyncio

from fastapi import APIRouter, Depends

from whatsapp_campaigns.api.auth import require_admin
from whatsapp_campaigns.api.dependencies import AccountDep, ActorDep, DatabaseDep
from whatsapp_campaigns.api.schemas import Credits, TopUpRequest
from whatsapp_campaigns.store import accounts
from whatsapp_campaigns.store.db import Database

router = APIRouter(prefix="/credits", tags=["credits"])

_LEDGER_ENTRIES = 20


def _credits(db: Database, account_id: str) -> Credits:
    return Credits(
        account_id=account_id,
        balance=accounts.get_balance(db, account_id),
        ledger=accounts.list_ledger(db, account_id, limit=_LEDGER_ENTRIES),
    )


@router.get("", summary="Balance and latest ledger entries")
async def get_credits(db: DatabaseDep, account: AccountDep) -> Credits:
    """Credits available to reserve (reservations of running campaigns are not in the
    balance), and the latest top-ups, reservations, charges and releases."""
    return await asyncio.to_thread(_credits, db, account)


@router.post("", summary="Add credits", dependencies=[Depends(require_admin)])
async def add_credits(
    body: TopUpRequest, db: DatabaseDep, account: AccountDep, actor: ActorDep
) -> Credits:
    """Top the balance up by `amount` (admin keys only: credits are money); recorded in the
    ledger with who did it."""
    await asyncio.to_thread(accounts.add_credits, db, account, body.amount, f"top-up by {actor}")
    return await asyncio.to_thread(_credits, db, account)
