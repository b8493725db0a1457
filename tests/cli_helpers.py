"""Running the `campaigns` CLI in tests: in-process through typer's CliRunner (fast, with its own
environment), or as a real subprocess for the commands that serve or own the process."""

import asyncio
import contextlib
import csv
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from whatsapp_campaigns.cli import app
from whatsapp_campaigns.processes import CAMPAIGNS as CAMPAIGNS
from whatsapp_campaigns.processes import ChildProcess, http_ready
from whatsapp_campaigns.processes import free_port as free_port
from whatsapp_campaigns.settings import get_settings


def invoke(args: Sequence[str], env: dict[str, str], *, stdin: str | None = None) -> Result:
    """Run `campaigns ARGS` in this process with `env` on top of the environment (and `stdin`
    as its standard input)."""
    get_settings.cache_clear()  # the CLI reads its settings once per process otherwise
    try:
        return CliRunner().invoke(app, list(args), env=env, input=stdin)
    finally:
        get_settings.cache_clear()


async def invoke_async(args: Sequence[str], env: dict[str, str]) -> Result:
    """`invoke` from async code: the CLI runs its own event loop, so it gets a thread."""
    return await asyncio.to_thread(invoke, args, env)


def ok_json(result: Result) -> Any:
    """The JSON a successful command printed."""
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return json.loads(result.stdout)


def one_line_error(result: Result) -> str:
    """A refused command: non-zero exit, nothing on stdout, one `error: ...` line on stderr."""
    assert result.exit_code != 0, result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def write_audience_csv(path: Path, phones: Sequence[str]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["phone", "name", "order_id"])
        for index, phone in enumerate(phones):
            writer.writerow([phone, f"Customer {index}", f"A{index}"])
    return path


def subprocess_env(**overrides: str) -> dict[str, str]:
    """This environment without the settings a developer may have exported, plus `overrides`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CAMPAIGNS_", "WHATSAPP_", "TEMPORAL_"))
    }
    return env | overrides


@contextlib.contextmanager
def serving(
    args: Sequence[str],
    env: dict[str, str],
    ready_url: str,
    *,
    timeout: float = 30.0,
    output: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`campaigns ARGS` as a subprocess, once `ready_url` answers; stopped with SIGTERM.
    `output`: a file that keeps its stdout and stderr (default: a temporary one)."""
    with contextlib.ExitStack() as files:
        log = output or Path(files.enter_context(tempfile.TemporaryDirectory())) / "output.log"
        name = f"campaigns {' '.join(args)}"
        child = ChildProcess(name, [CAMPAIGNS, *args], env, log, http_ready(ready_url))
        try:
            child.start(timeout)
            assert child.process is not None
            yield child.process
        finally:
            child.stop()
