"""Opt-outs (SPEC §4 rule 10): numbers that replied STOP are never sent to again by the account."""

from collections.abc import Collection

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import insert_if_absent, rowcount
from whatsapp_campaigns.store.models import OptOut, utcnow

# Numbers per IN (...) list: well under SQLite's limit on bound parameters.
_IN_CHUNK = 500


def opt_out(session: Session, account_id: str, phone_e164: str, keyword: str | None) -> bool:
    """Opt the number out, inside the caller's transaction (the webhook that saw the STOP).

    True when it was newly opted out; a repeated STOP keeps the first keyword and time.
    """
    return insert_if_absent(
        session,
        OptOut,
        {
            "account_id": account_id,
            "phone_e164": phone_e164,
            "keyword": keyword,
            "created_at": utcnow(),
        },
        keys=["account_id", "phone_e164"],
    )


def is_opted_out(db: Database, account_id: str, phone_e164: str) -> bool:
    with db.session() as session:
        return bool(opted_out_among(session, account_id, [phone_e164]))


def opted_out_among(session: Session, account_id: str, phones: Collection[str]) -> set[str]:
    """Which of `phones` have opted out of the account (any number of phones)."""
    unique = sorted(set(phones))
    found: set[str] = set()
    for start in range(0, len(unique), _IN_CHUNK):
        found.update(
            session.scalars(
                select(OptOut.phone_e164).where(
                    OptOut.account_id == account_id,
                    OptOut.phone_e164.in_(unique[start : start + _IN_CHUNK]),
                )
            )
        )
    return found


def remove_opt_out(db: Database, account_id: str, phone_e164: str) -> bool:
    """Opt the number back in (it asked to); True when it was opted out."""
    with db.session() as session:
        removed = rowcount(
            session,
            delete(OptOut).where(OptOut.account_id == account_id, OptOut.phone_e164 == phone_e164),
        )
        return removed > 0
