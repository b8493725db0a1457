"""The production-style stack of a chaos run, every part its own process: the Temporal dev
server on a file store (`--db-filename`), `campaigns sandbox` over HTTP posting signed status
webhooks to `campaigns api`, and N `campaigns worker` processes sending through the Cloud API
client, all on one store: a private PostgreSQL schema (dropped afterwards), or a SQLite file.

The harness itself reads the store and the sandbox's counts in-process; its own PostgreSQL
connections carry another `application_name` than the stack's, so terminating the stack's
connections (`terminate_store_connections`) spares them."""

import json
import logging
import os
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import func, select, text

from whatsapp_campaigns.devstack import temporal_binary
from whatsapp_campaigns.domain.models import CampaignDraft, Sender
from whatsapp_campaigns.processes import (
    CAMPAIGNS,
    ChildProcess,
    free_port,
    http_ready,
    port_ready,
    temporal_dev_server_command,
)
from whatsapp_campaigns.store import campaigns, catalog, webhook_inbox
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER, seed_sandbox
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.store.models import CampaignRow, MessageRow
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES, ordinary_numbers

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
NAMESPACE = "default"
ACCESS_TOKEN = "chaos-sandbox-token"  # the sandbox takes any non-empty token
SCHEDULE_SECONDS = 120.0


@dataclass(frozen=True)
class StackOptions:
    work_dir: Path  # logs, the Temporal file store, the SQLite store
    workers: int = 2
    rate: float = 80.0  # the sender's messages/s (store and sandbox)
    postgres_url: str | None = None  # a server to put a private schema on; None: SQLite
    reconcile_seconds: float = 30.0  # CAMPAIGNS_RECONCILE_SECONDS of the workers
    webhook_delay: float = 0.3  # seconds between a message's status webhooks


@dataclass(frozen=True)
class MessageOutcome:
    """One message of the campaign at the end of the run."""

    wa_id: str  # E.164 digits, as the sandbox counts recipients
    status: str
    updated_at: float | None  # epoch seconds


def _epoch(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _with_params(url: str, **params: str) -> str:
    separator = "&" if "?" in url else "?"
    return url + separator + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


class ChaosStack:
    """`start()` brings every process up on a fresh store; `stop()` takes it all down (and drops
    the PostgreSQL schema). Processes are reachable by name for the faults to play with."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.run_id = uuid.uuid4().hex[:10]
        options.work_dir.mkdir(parents=True, exist_ok=True)
        self.temporal_port = free_port()
        self.api_url = f"http://{HOST}:{free_port()}"
        self.sandbox_url = f"http://{HOST}:{free_port()}"
        self.schema: str | None = None
        self.store_url = self._store_url()
        self._db: Database | None = None
        self.temporal: ChildProcess | None = None
        self.sandbox: ChildProcess | None = None
        self.api: ChildProcess | None = None
        self.workers: list[ChildProcess] = []

    # --------------------------------------------------------------------------- the store

    def _store_url(self, application: str = "chaos") -> str:
        """The store; on PostgreSQL, connections named `<application>_<run id>`."""
        admin = self.options.postgres_url
        if admin is None:
            return f"sqlite:///{self.options.work_dir / 'campaigns.db'}"
        self.schema = f"chaos_{self.run_id}"
        return _with_params(
            admin,
            options=f"-csearch_path={self.schema}",
            application_name=f"{application}_{self.run_id}",
        )

    @property
    def uses_postgres(self) -> bool:
        return self.schema is not None

    @property
    def db(self) -> Database:
        """The harness's own connection to the store (not terminated by the faults)."""
        if self._db is None:
            self._db = Database(self._store_url("harness"))
        return self._db

    def _create_store(self) -> None:
        if self.options.postgres_url is not None:
            admin = Database(self.options.postgres_url)
            try:
                with admin.engine.begin() as conn:
                    conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            finally:
                admin.dispose()
        upgrade(self.store_url)
        seed_sandbox(self.db)
        sender = SANDBOX_SENDER.model_dump() | {"rate_per_second": self.options.rate}
        catalog.upsert_sender(self.db, Sender(**sender))
        catalog.upsert_templates(self.db, SANDBOX_ACCOUNT_ID, SANDBOX_TEMPLATES)

    def terminate_store_connections(self) -> int:
        """pg_terminate_backend on every connection of the stack's processes; how many."""
        with self.db.engine.begin() as conn:
            ended = conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": f"chaos_{self.run_id}"},
            ).scalar_one()
        return int(ended)

    # ----------------------------------------------------------------------- the processes

    def _env(self, **extra: str) -> dict[str, str]:
        """The stack's settings, without any a developer may have exported."""
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CAMPAIGNS_", "WHATSAPP_", "TEMPORAL_"))
        }
        return inherited | {
            "CAMPAIGNS_DATABASE_URL": self.store_url,
            "TEMPORAL_ADDRESS": f"{HOST}:{self.temporal_port}",
            "TEMPORAL_NAMESPACE": NAMESPACE,
            "CAMPAIGNS_PROVIDER": "cloud",
            "WHATSAPP_API_BASE_URL": self.sandbox_url,
            "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN,
            **extra,
        }

    def _log(self, name: str) -> Path:
        return self.options.work_dir / f"{name}.log"

    def start(self) -> None:
        self._create_store()
        command = temporal_dev_server_command(
            temporal_binary(),
            HOST,
            self.temporal_port,
            self.options.work_dir / "temporal.db",
            NAMESPACE,
            ui_port=None,
        )
        ready = port_ready(HOST, self.temporal_port)
        self.temporal = ChildProcess("temporal", command, self._env(), self._log("temporal"), ready)
        self.temporal.start()
        sandbox_port = self.sandbox_url.rsplit(":", 1)[1]
        self.sandbox = ChildProcess(
            "sandbox",
            [
                *(CAMPAIGNS, "sandbox", "--port", sandbox_port, "--rate", str(self.options.rate)),
                *("--webhook-url", f"{self.api_url}/webhooks/whatsapp"),
                *("--webhook-delay", str(self.options.webhook_delay)),
            ],
            self._env(),
            self._log("sandbox"),
            http_ready(f"{self.sandbox_url}/sandbox/faults"),
        )
        self.sandbox.start()
        self.api = ChildProcess(
            "api",
            [CAMPAIGNS, "api", "--port", self.api_url.rsplit(":", 1)[1]],
            self._env(),
            self._log("api"),
            http_ready(f"{self.api_url}/healthz"),
        )
        self.api.start()
        for index in range(self.options.workers):
            metrics = free_port()
            worker = ChildProcess(
                f"worker-{index + 1}",
                [CAMPAIGNS, "worker"],
                self._env(
                    CAMPAIGNS_WORKER_METRICS_PORT=str(metrics),
                    CAMPAIGNS_RECONCILE_SECONDS=str(self.options.reconcile_seconds),
                ),
                self._log(f"worker-{index + 1}"),
                http_ready(f"http://{HOST}:{metrics}/metrics"),
            )
            worker.start()
            self.workers.append(worker)

    def stop(self) -> None:
        """Every process down (workers first), then the store's schema dropped."""
        for part in [*self.workers, self.api, self.sandbox, self.temporal]:
            if part is not None:
                try:
                    part.stop()
                except Exception:  # keep stopping the others
                    log.exception("could not stop %s", part.name)
        if self._db is not None:
            self._db.dispose()
            self._db = None
        if self.options.postgres_url is not None and self.schema is not None:
            admin = Database(self.options.postgres_url)
            try:
                with admin.engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            finally:
                admin.dispose()

    # ------------------------------------------------------------------------ the campaign

    def create_campaign(self, recipients: int) -> str:
        """A draft campaign of `order_update` to `recipients` ordinary sandbox numbers."""
        rows = (
            {"phone": phone, "name": f"Customer {i}", "order_id": f"A{i}"}
            for i, phone in enumerate(ordinary_numbers(recipients))
        )
        audience = import_audience_rows(self.db, SANDBOX_ACCOUNT_ID, "chaos audience", rows)
        draft = CampaignDraft(
            name=f"chaos {self.run_id}",
            template_name="order_update",
            sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
            audience_id=audience.audience.id,
        )
        return campaigns.create_draft(self.db, SANDBOX_ACCOUNT_ID, draft).id

    def launch(self, campaign_id: str) -> None:
        """`campaigns schedule ID --now`, as an operator would."""
        done = subprocess.run(
            [CAMPAIGNS, "schedule", campaign_id, "--now", "--json"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=SCHEDULE_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"campaigns schedule failed: {done.stdout}{done.stderr}")
        log.info("launched: %s", json.loads(done.stdout)["status"])

    def campaign_status(self, campaign_id: str) -> str:
        with self.db.session() as session:
            query = select(CampaignRow.status).where(CampaignRow.id == campaign_id)
            return str(session.scalars(query).one())

    def messages_by_status(self, campaign_id: str) -> dict[str, int]:
        with self.db.session() as session:
            rows = session.execute(
                select(MessageRow.status, func.count())
                .where(MessageRow.campaign_id == campaign_id)
                .group_by(MessageRow.status)
            )
            return {str(status): int(count) for status, count in rows}

    def outcomes(self, campaign_id: str) -> list[MessageOutcome]:
        with self.db.session() as session:
            rows = session.execute(
                select(MessageRow.phone_e164, MessageRow.status, MessageRow.updated_at).where(
                    MessageRow.campaign_id == campaign_id
                )
            )
            return [
                MessageOutcome(phone.lstrip("+"), str(status), _epoch(updated))
                for phone, status, updated in rows
            ]

    def webhooks_waiting(self) -> int:
        """Webhooks the API stored and has not applied yet."""
        return int(webhook_inbox.backlog(self.db).waiting)

    # ------------------------------------------------------------------------- the sandbox

    async def sandbox_stats(self, *, detail: bool = False) -> dict[str, Any]:
        """GET /sandbox/stats; `detail`: per second and per recipient too (costly)."""
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=30.0) as client:
            answer = await client.get("/sandbox/stats", params={"detail": detail})
            answer.raise_for_status()
            stats: dict[str, Any] = answer.json()
            return stats

    async def set_sandbox_faults(self, **switches: float) -> None:
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=30.0) as client:
            (await client.put("/sandbox/faults", json=switches)).raise_for_status()

    async def sandbox_error_burst(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=30.0) as client:
            answer = await client.post("/sandbox/faults/error-burst", params={"seconds": seconds})
            answer.raise_for_status()
