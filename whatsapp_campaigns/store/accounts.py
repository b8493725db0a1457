"""Accounts and the credits ledger (SPEC §4 rule 4).

Credits move: balance -> campaign reservation (at execution) -> charged (one charge per
accepted message, settled when the campaign run ends); what is left of the reservation returns
to the balance then. Every move is a
conditional UPDATE, so concurrent campaigns on one account never overdraw it and the balance
never goes negative. The ledger records top-ups, reservations, one charge row per campaign run
and releases (not one row per message: a campaign may have a million). Ledger amounts are
positive; `kind` says which way they moved and `balance_after` is the balance right after.
"""

import logging
import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.tenancy import AccountInfo
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import insert_if_absent, rowcount
from whatsapp_campaigns.store.errors import Conflict, InsufficientCredits, InvalidInput, NotFound
from whatsapp_campaigns.store.models import (
    Account,
    CampaignRow,
    CreditEntry,
    MessageRow,
    SenderNumber,
    WhatsAppConnection,
    utcnow,
)

log = logging.getLogger(__name__)


class LedgerEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    account_id: str
    campaign_id: str | None
    kind: str  # topup | reserve | charge | release
    amount: int
    balance_after: int | None
    note: str | None
    created_at: datetime


# Account ids appear in URLs, headers and Temporal search queries: keep them plain.
_ACCOUNT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def create_account(db: Database, account_id: str, name: str) -> AccountInfo:
    """A new account with no credits, no connection and no numbers."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise InvalidInput(
            f"account id {account_id!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if not name.strip():
        raise InvalidInput("the account name is empty")
    with db.session() as session:
        created = insert_if_absent(
            session,
            Account,
            {"id": account_id, "name": name.strip(), "credit_balance": 0, "created_at": utcnow()},
            keys=["id"],
        )
        if not created:
            raise Conflict(f"account {account_id} exists already")
    return get_account(db, account_id)


def get_account(db: Database, account_id: str) -> AccountInfo:
    accounts = _account_infos(db, account_id)
    if not accounts:
        raise NotFound(f"account {account_id} not found")
    return accounts[0]


def list_accounts(db: Database) -> list[AccountInfo]:
    return _account_infos(db, None)


def _account_infos(db: Database, account_id: str | None) -> list[AccountInfo]:
    senders = (
        select(SenderNumber.account_id, func.count().label("senders"))
        .where(SenderNumber.removed_at.is_(None))
        .group_by(SenderNumber.account_id)
        .subquery()
    )
    statement = (
        select(
            Account,
            WhatsAppConnection.waba_id,
            WhatsAppConnection.app_secret_encrypted.is_not(None),
            func.coalesce(senders.c.senders, 0),
        )
        .outerjoin(WhatsAppConnection, WhatsAppConnection.account_id == Account.id)
        .outerjoin(senders, senders.c.account_id == Account.id)
        .order_by(Account.id)
    )
    if account_id is not None:
        statement = statement.where(Account.id == account_id)
    with db.session() as session:
        return [
            AccountInfo(
                id=account.id,
                name=account.name,
                credit_balance=account.credit_balance,
                created_at=account.created_at,
                waba_id=waba_id,
                connected=waba_id is not None,
                has_app_secret=bool(has_app_secret),
                senders=int(sender_count),
            )
            for account, waba_id, has_app_secret, sender_count in session.execute(statement)
        ]


def ensure_account(db: Database, account_id: str, name: str | None = None) -> None:
    """Create the account if it does not exist (named `name`, else its id); renames it when a
    different `name` is given."""
    with db.session() as session:
        created = insert_if_absent(
            session,
            Account,
            {"id": account_id, "name": name or account_id, "credit_balance": 0},
            keys=["id"],
        )
        if not created and name is not None:
            session.execute(update(Account).where(Account.id == account_id).values(name=name))


def get_balance(db: Database, account_id: str) -> int:
    with db.session() as session:
        return _balance(session, account_id)


def add_credits(db: Database, account_id: str, amount: int, note: str | None = None) -> int:
    """Top the account up by `amount` (> 0); returns the new balance."""
    if amount <= 0:
        raise InvalidInput(f"a top-up must be a positive number of credits, not {amount}")
    with db.session() as session:
        return _top_up(session, account_id, amount, note)


def top_up_to(db: Database, account_id: str, minimum: int, note: str | None = None) -> int:
    """Raise the balance to at least `minimum` (seeding the sandbox and the demo); returns the
    balance. One transaction, so concurrent seeders never top up twice."""
    with db.session() as session:
        balance = session.scalar(
            select(Account.credit_balance).where(Account.id == account_id).with_for_update()
        )
        if balance is None:
            raise NotFound(f"account {account_id} not found")
        if balance >= minimum:
            return balance
        return _top_up(session, account_id, minimum - balance, note)


def reserve_credits(db: Database, campaign_id: str, amount: int) -> None:
    """Move `amount` from the account's balance into the campaign's reservation.

    Safe to repeat: a campaign that already holds a reservation keeps it (no-op). Raises
    InsufficientCredits, changing nothing, when the balance is short.
    """
    if amount < 0:
        raise InvalidInput(f"cannot reserve a negative number of credits ({amount})")
    with db.session() as session:
        account_id = _campaign_account(session, campaign_id)
        if amount == 0:
            return
        # Claim the reservation slot first: of two concurrent calls for one campaign, one wins.
        claimed = rowcount(
            session,
            update(CampaignRow)
            .where(CampaignRow.id == campaign_id, CampaignRow.reserved_credits == 0)
            .values(reserved_credits=amount),
        )
        if not claimed:
            return
        debited = rowcount(
            session,
            update(Account)
            .where(Account.id == account_id, Account.credit_balance >= amount)
            .values(credit_balance=Account.credit_balance - amount),
        )
        if not debited:
            # Raising rolls the claim back: nothing changes.
            raise InsufficientCredits(needed=amount, available=_balance(session, account_id))
        _write_entry(session, account_id, campaign_id, "reserve", amount)


def release_credits(db: Database, campaign_id: str, *, credits_per_message: int) -> int:
    """Settle a campaign (run): charge its accepted messages, return the rest of the
    reservation to the balance. Returns the credits released; repeating it changes nothing.

    Every message WhatsApp accepted (it has a provider message id, whether the send recorded it
    or a webhook reconciled it) costs `credits_per_message`, charged exactly once: what earlier
    runs charged is kept in `charged_credits`. Charges come out of the reservation first, then
    out of the balance (never below zero: WhatsApp accepted those messages, so a shortfall is
    still recorded as charged and logged).
    """
    with db.session() as session:
        row = session.execute(
            select(
                CampaignRow.account_id, CampaignRow.reserved_credits, CampaignRow.charged_credits
            )
            .where(CampaignRow.id == campaign_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise NotFound(f"campaign {campaign_id} not found")
        account_id, reserved, charged = row
        accepted = session.scalar(
            select(func.count())
            .select_from(MessageRow)
            .where(
                MessageRow.campaign_id == campaign_id,
                MessageRow.provider_message_id.is_not(None),
            )
        )
        new_charges = max(0, int(accepted or 0) * credits_per_message - charged)
        from_reservation = min(reserved, new_charges)
        from_balance = new_charges - from_reservation
        if from_balance and not rowcount(
            session,
            update(Account)
            .where(Account.id == account_id, Account.credit_balance >= from_balance)
            .values(credit_balance=Account.credit_balance - from_balance),
        ):
            log.warning(
                "campaign %s: %d credits for accepted messages exceed the reservation and the "
                "balance of account %s; recorded as charged",
                campaign_id,
                from_balance,
                account_id,
            )
        released = reserved - from_reservation
        session.execute(
            update(CampaignRow)
            .where(CampaignRow.id == campaign_id)
            .values(reserved_credits=0, charged_credits=charged + new_charges)
        )
        if new_charges:
            _write_entry(session, account_id, campaign_id, "charge", new_charges)
        if released:
            session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(credit_balance=Account.credit_balance + released)
            )
            _write_entry(session, account_id, campaign_id, "release", released)
        return int(released)


def list_ledger(db: Database, account_id: str, limit: int = 100) -> list[LedgerEntry]:
    """The account's latest ledger entries, newest first."""
    with db.session() as session:
        rows = session.scalars(
            select(CreditEntry)
            .where(CreditEntry.account_id == account_id)
            .order_by(CreditEntry.id.desc())
            .limit(limit)
        )
        return [LedgerEntry.model_validate(row) for row in rows]


def _balance(session: Session, account_id: str) -> int:
    balance = session.scalar(select(Account.credit_balance).where(Account.id == account_id))
    if balance is None:
        raise NotFound(f"account {account_id} not found")
    return int(balance)


def _campaign_account(session: Session, campaign_id: str) -> str:
    account_id = session.scalar(select(CampaignRow.account_id).where(CampaignRow.id == campaign_id))
    if account_id is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return account_id


def _top_up(session: Session, account_id: str, amount: int, note: str | None) -> int:
    added = rowcount(
        session,
        update(Account)
        .where(Account.id == account_id)
        .values(credit_balance=Account.credit_balance + amount),
    )
    if not added:
        raise NotFound(f"account {account_id} not found")
    return _write_entry(session, account_id, None, "topup", amount, note)


def _write_entry(
    session: Session,
    account_id: str,
    campaign_id: str | None,
    kind: str,
    amount: int,
    note: str | None = None,
) -> int:
    """Append a ledger entry with the balance as it stands now; returns that balance."""
    balance = _balance(session, account_id)
    session.add(
        CreditEntry(
            account_id=account_id,
            campaign_id=campaign_id,
            kind=kind,
            amount=amount,
            balance_after=balance,
            note=note,
            created_at=utcnow(),
        )
    )
    session.flush()
    return balance
