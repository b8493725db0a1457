"""An empty, migrated store for one benchmark run, on either backend, and the drafts the
benches send (shared by the benches)."""

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from whatsapp_campaigns.domain.models import CampaignDraft, Sender
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID
from whatsapp_campaigns.store.migrate import upgrade


@contextmanager
def migrated_store(backend: str, postgres_url: str | None) -> Iterator[str]:
    """The URL of a SQLite file in a temporary folder, or of a private schema on the
    PostgreSQL server at `postgres_url` (dropped afterwards: the bench leaves it clean)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(url)
            yield url
        return
    assert postgres_url is not None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Database(postgres_url)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in postgres_url else "?"
        url = f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
        upgrade(url)
        yield url
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def bench_draft(db: Database, name: str, sender: str, phones: list[str]) -> CampaignDraft:
    """An audience of `phones` (with the sandbox `order_update` template's variables) and a
    draft sending it from `sender` without the failure-rate auto-pause."""
    rows = [
        {"phone": p, "name": f"Customer {k}", "order_id": f"A{k}"} for k, p in enumerate(phones)
    ]
    audience = import_audience_rows(db, SANDBOX_ACCOUNT_ID, f"{name} audience", rows)
    return CampaignDraft(
        name=name,
        template_name="order_update",
        sender_phone_number_id=sender,
        audience_id=audience.audience.id,
        policy=CampaignPolicy(auto_pause_enabled=False),
    )


def bench_sender(db: Database, number: str, rate: int) -> None:
    """A sender number of the sandbox account at `rate` msg/s, with no daily tier to reach."""
    catalog.upsert_sender(
        db,
        Sender(
            phone_number_id=number,
            account_id=SANDBOX_ACCOUNT_ID,
            display_number="+12025550100",
            rate_per_second=rate,
            tier=10_000_000,
        ),
    )
