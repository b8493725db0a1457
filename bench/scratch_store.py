"""An empty, migrated store for one benchmark run, on either backend (shared by the benches)."""

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from whatsapp_campaigns.store.db import Database
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
