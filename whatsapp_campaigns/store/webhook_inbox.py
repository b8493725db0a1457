"""The webhook inbox (SPEC §6 Webhooks): received payloads, durable before the receiver answers
200, until a batch applier has applied them.

Receiving costs one multi-row INSERT for every payload that arrived during the previous commit
(group commit); applying claims the oldest rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
several API replicas share the work), applies them and deletes them in the same transaction:
a payload is applied once, or - after a crash - again, which the monotonic status updates
make harmless.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import WebhookInboxRow, utcnow


@dataclass(frozen=True)
class InboxItem:
    id: int
    received_at: datetime
    body: bytes


@dataclass(frozen=True)
class Backlog:
    waiting: int  # payloads not applied yet
    oldest_seconds: float  # age of the oldest of them (0 when none wait)
    dead_letters: int  # payloads whose application failed for a reason a retry cannot fix


def append(db: Database, received: Sequence[tuple[bytes, datetime]]) -> None:
    """Store payloads (raw body, time of receipt) in one statement and one commit."""
    if not received:
        return
    with db.transaction() as connection:
        connection.execute(
            insert(WebhookInboxRow),
            [{"body": body, "received_at": at} for body, at in received],
        )


def claim(session: Session, limit: int) -> list[InboxItem]:
    """The oldest waiting payloads, locked until the session ends (rows another replica holds
    are skipped on PostgreSQL; SQLite has one writer anyway)."""
    rows = session.execute(
        select(WebhookInboxRow.id, WebhookInboxRow.received_at, WebhookInboxRow.body)
        .where(WebhookInboxRow.error.is_(None))
        .order_by(WebhookInboxRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [InboxItem(id_, at, bytes(body)) for id_, at, body in rows]


def remove(session: Session, ids: Sequence[int]) -> None:
    """Drop applied payloads."""
    session.execute(
        delete(WebhookInboxRow)
        .where(WebhookInboxRow.id.in_(ids))
        .execution_options(synchronize_session=False)
    )


def set_aside(db: Database, item_id: int, error: str) -> None:
    """Keep a payload that cannot be applied, out of the way of the others."""
    with db.session() as session:
        session.execute(
            update(WebhookInboxRow)
            .where(WebhookInboxRow.id == item_id)
            .values(error=error[:2000])
            .execution_options(synchronize_session=False)
        )


def backlog(db: Database) -> Backlog:
    with db.session() as session:
        waiting = session.scalar(select(func.count()).where(WebhookInboxRow.error.is_(None)))
        oldest = session.scalar(
            select(WebhookInboxRow.received_at)
            .where(WebhookInboxRow.error.is_(None))
            .order_by(WebhookInboxRow.id)
            .limit(1)
        )
        dead = session.scalar(select(func.count()).where(WebhookInboxRow.error.is_not(None)))
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest is not None else 0.0
    return Backlog(waiting=int(waiting or 0), oldest_seconds=age, dead_letters=int(dead or 0))
