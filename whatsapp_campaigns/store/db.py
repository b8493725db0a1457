"""Engine and session wiring for SQLite (default, WAL) and PostgreSQL."""

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for the store: WAL and a busy timeout on SQLite, pooled on PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling would defer BEGIN; take the write lock up front
        # so that read-then-write transactions cannot deadlock each other.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """One engine and session factory per process; `session()` is a unit of work."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Threads of this process take turns on a lock, which
        # hands over at once, instead of SQLite's busy handler, which sleeps and polls (and at
        # a few hundred sends a second spent most of the time asleep). Other processes still
        # meet the busy timeout.
        self._write_turn = threading.RLock() if self.is_sqlite else contextlib.nullcontext()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self._write_turn, self._sessions.begin() as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A Core-only transaction, for hot paths where the ORM's per-statement work shows."""
        with self._write_turn, self.engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        self.engine.dispose()
