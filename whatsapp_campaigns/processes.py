"""Child processes that can be killed and started again: `campaigns worker|api|sandbox` and
the Temporal dev server, each with its output appended to a log file, each ready once a URL
answers (or, for Temporal, once a client connects)."""

import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from whatsapp_campaigns.workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

log = logging.getLogger(__name__)

CAMPAIGNS = str(Path(sys.executable).parent / "campaigns")
READY_SECONDS = 60.0
STOP_SECONDS = 15.0


class ProcessError(Exception):
    """A child process exited or did not become ready; the message quotes its log."""


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ready(url: str) -> Callable[[], bool]:
    """Ready when `url` answers below 500."""

    def check() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=1.0).status_code < 500
        return False

    return check


def port_ready(host: str, port: int) -> Callable[[], bool]:
    """Ready when something accepts connections on host:port."""

    def check() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return True
        return False

    return check


# The dev server's dynamic config, as deploy/temporal/dynamicconfig.yaml sets it in production:
# fairness keys and weights on a task queue (campaigns sharing a number, SPEC §11), and one
# partition per queue, so that a number's utility sends strictly go before its marketing ones;
# and room for 1,000 events buffered while a campaign's workflow task is in flight (the default
# 100 is 50 send completions: past it the server force-fails the task, and the worker replays
# the run's history to redo it; docs/engine.md "Workflow tasks under a flood of completions");
# and an events cache per history shard that holds the scheduled events of the sends in flight
# (the dev server has one shard: Temporal's default 512 KiB, ~1,000 events, is overflowed by
# four numbers' windows, and each send's start then reads its event back from the database;
# docs/engine.md "The events cache").
BUFFERED_EVENTS_PER_WORKFLOW = 1000
EVENTS_CACHE_BYTES_PER_SHARD = 32 * 1024 * 1024
TEMPORAL_DYNAMIC_CONFIG = (
    *("--dynamic-config-value", "matching.enableFairness=true"),
    *("--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"),
    *("--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"),
    *(
        "--dynamic-config-value",
        f"history.maximumBufferedEventsBatch={BUFFERED_EVENTS_PER_WORKFLOW}",
    ),
    *("--dynamic-config-value", f"history.eventsCacheMaxSizeBytes={EVENTS_CACHE_BYTES_PER_SHARD}"),
)


# The dev server's SQLite file, as `--sqlite-pragma` values: a write-ahead log, synced at its
# checkpoints rather than at each commit. Temporal's SQLite store has one connection, so every
# write of a workflow execution waits for the one before; in SQLite's default rollback journal
# each commit wrote and deleted a journal file and synced the disk twice, and at sixteen
# campaigns that store was busy 0.9 s of every second (bench/RESULTS.md, "The dev server's
# SQLite"). A crash of the server loses nothing committed; a crash of the machine may lose
# its last commits (https://www.sqlite.org/pragma.html#pragma_synchronous): a dev stack's trade.
TEMPORAL_SQLITE_PRAGMAS = (
    *("--sqlite-pragma", "journal_mode=wal"),
    *("--sqlite-pragma", "synchronous=normal"),
)


def temporal_dev_server_command(
    temporal: str, host: str, port: int, db_file: Path, namespace: str, *, ui_port: int | None
) -> list[str]:
    """`temporal server start-dev` keeping its state in `db_file` (in WAL mode), with fairness on
    and the campaigns' search attributes registered (again on a restart: the dev server accepts
    that)."""
    command = [
        *(temporal, "server", "start-dev", "--ip", host, "--port", str(port)),
        *("--db-filename", str(db_file), "--namespace", namespace, "--log-level", "warn"),
        *TEMPORAL_SQLITE_PRAGMAS,
        *TEMPORAL_DYNAMIC_CONFIG,
    ]
    if ui_port is None:
        command.append("--headless")
    else:
        command += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
    for key in ALL_SEARCH_ATTRIBUTES:
        kind = key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_").title()
        command += ["--search-attribute", f"{key.name}={kind}"]
    return command


class ChildProcess:
    """One long-running command: `start()` waits until `ready()`, `kill()` sends a signal and
    reaps it, `restart()` does both. Output goes to `log_file` (appended across restarts)."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: dict[str, str],
        log_file: Path,
        ready: Callable[[], bool],
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.log_file = log_file
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = READY_SECONDS) -> None:
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the harness only
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self.process.returncode}: {self.tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} was not ready in {timeout:.0f} s: {self.tail()}")
            time.sleep(0.2)
        log.info("%s ready (pid %d)", self.name, self.process.pid)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Send `signum` and wait for the process to exit (SIGKILL after STOP_SECONDS)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop on signal %d: killing it", self.name, signum)
            process.kill()
            process.wait()

    def restart(self, signum: int = signal.SIGKILL, pause: float = 0.0) -> None:
        self.kill(signum)
        time.sleep(pause)
        self.start()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"(no log at {self.log_file})"
        return "\n".join(text[-lines:])
