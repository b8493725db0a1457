"""The embedded stack: `campaigns dev` and `campaigns demo`."""

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from whatsapp_campaigns.cli.app import HostOption, app, console, fail, guard, print_json
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.settings import Settings, get_settings

if TYPE_CHECKING:
    from whatsapp_campaigns.devstack import DevStack, StackOptions

T = TypeVar("T")

ApiPortOption = Annotated[int, typer.Option("--port", help="Port of the API and dashboard.")]
TemporalPortOption = Annotated[
    int | None,
    typer.Option(help="Port of the Temporal dev server (default: TEMPORAL_ADDRESS's, 7233)."),
]
UiPortOption = Annotated[int, typer.Option(help="Port of the Temporal web UI.")]
NoUiOption = Annotated[bool, typer.Option("--no-ui", help="Run Temporal without its web UI.")]
SandboxPortOption = Annotated[int, typer.Option(help="Port of the WhatsApp sandbox.")]
DataDirOption = Annotated[
    Path, typer.Option(help="Where Temporal keeps its state, and the logs go.")
]


def _stack_options(
    host: str,
    port: int,
    temporal_port: int | None,
    ui_port: int,
    no_ui: bool,
    sandbox_port: int,
    data_dir: Path,
    *,
    use_sandbox: bool = True,
) -> "StackOptions":
    from whatsapp_campaigns.devstack import StackOptions

    if temporal_port is None:
        _, _, tail = get_settings().temporal_address.rpartition(":")
        temporal_port = int(tail) if tail.isdigit() else 7233
    return StackOptions(
        host=host,
        api_port=port,
        temporal_port=temporal_port,
        ui_port=None if no_ui else ui_port,
        sandbox_port=sandbox_port,
        data_dir=data_dir,
        sandbox=use_sandbox,
    )


def _stack_logging(data_dir: Path, console_level: int) -> Path:
    """Everything to <data dir>/dev.log; only `console_level` and above to the terminal."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = data_dir / "dev.log"
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(console_level)
    to_terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[to_file, to_terminal], force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per send and webhook
    return log_file


def keep_stdout_for_json(log_file: Path) -> None:
    """`--json`: stdout carries the JSON alone, for the rest of the command. Native code that
    writes to the process's standard output (the Temporal SDK core prints its warnings there,
    e.g. "Task not found when completing") writes to the stack's log file instead."""
    sys.stdout.flush()
    json_fd = os.dup(1)
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 1)
    sys.stdout = os.fdopen(json_fd, "w", encoding="utf-8")


def _run_stack(options: "StackOptions", body: "Callable[[DevStack], Awaitable[T]]") -> T | None:
    from whatsapp_campaigns.devstack import StackError, run_stack

    try:
        return guard(run_stack(get_settings(), options, body))
    except StackError as error:
        fail(str(error))


def _print_stack(stack: "DevStack", out: Console, log_file: Path) -> None:
    urls = stack.urls
    table = Table(title="campaigns dev stack", show_header=False)
    table.add_row("Temporal", f"{urls.temporal}  (namespace {urls.namespace})")
    if urls.temporal_ui is not None:
        table.add_row("Temporal UI", f'{urls.temporal_ui}  (search CampaignStatus="sending")')
    table.add_row("API", f"{urls.api}  (OpenAPI: {urls.docs})")
    if urls.dashboard is not None:
        table.add_row("dashboard", urls.dashboard)
    if urls.sandbox is not None:
        table.add_row(
            "WhatsApp sandbox", f"{urls.sandbox}  (webhooks to {urls.api}/webhooks/whatsapp)"
        )
    table.add_row("store", stack.settings.database_url)
    table.add_row("logs", f"{log_file}, {stack.temporal_log}")
    out.print(table)
    defaults = Settings()
    if urls.temporal != defaults.temporal_address:
        out.print(
            f"other commands: TEMPORAL_ADDRESS={urls.temporal} campaigns ...", highlight=False
        )


@app.command()
def dev(
    host: HostOption = "127.0.0.1",
    port: ApiPortOption = 8000,
    temporal_port: TemporalPortOption = None,
    ui_port: UiPortOption = 8233,
    no_ui: NoUiOption = False,
    sandbox_port: SandboxPortOption = 8001,
    use_sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox/--no-sandbox",
            help="Send through the WhatsApp sandbox, or through the settings' provider.",
        ),
    ] = True,
    data_dir: DataDirOption = Path(".campaigns"),
) -> None:
    """Run everything locally: Temporal dev server + UI, worker, API + dashboard, and the
    WhatsApp sandbox posting webhooks to the API. Ctrl-C stops it all."""
    options = _stack_options(
        host, port, temporal_port, ui_port, no_ui, sandbox_port, data_dir, use_sandbox=use_sandbox
    )
    log_file = _stack_logging(data_dir, logging.WARNING)

    async def body(stack: "DevStack") -> None:
        _print_stack(stack, console, log_file)
        console.print("ready: Ctrl-C to stop")
        await asyncio.Event().wait()

    _run_stack(options, body)
    console.print("stopped")


@app.command()
def demo(
    recipients: Annotated[
        int, typer.Option(min=10, max=50_000, help="Size of the generated audience.")
    ] = 3000,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait", help="Stop the stack and exit as soon as the campaign ends (scripts, CI)."
        ),
    ] = False,
    messaging_limit_backoff: Annotated[
        float,
        typer.Option(
            min=0.5, help="Seconds the messaging-limit number waits (12 h in production)."
        ),
    ] = 10.0,
    host: HostOption = "127.0.0.1",
    port: ApiPortOption = 8000,
    temporal_port: TemporalPortOption = None,
    ui_port: UiPortOption = 8233,
    no_ui: NoUiOption = False,
    sandbox_port: SandboxPortOption = 8001,
    data_dir: DataDirOption = Path(".campaigns"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout (the rest: stderr).")
    ] = False,
) -> None:
    """Start the dev stack, send a sample campaign with a live progress bar, summarize it.

    Exits non-zero with --no-wait when the campaign does not end `completed`."""
    from whatsapp_campaigns.demo import DemoResult, print_summary, run_demo

    options = _stack_options(host, port, temporal_port, ui_port, no_ui, sandbox_port, data_dir)
    log_file = _stack_logging(data_dir, logging.ERROR)
    out = Console(stderr=True) if as_json else console
    if as_json:
        keep_stdout_for_json(log_file)

    async def body(stack: "DevStack") -> DemoResult:
        _print_stack(stack, out, log_file)
        result = await run_demo(
            stack,
            recipients=recipients,
            console=out,
            messaging_limit_backoff=messaging_limit_backoff,
        )
        print_summary(result, out)
        if as_json:
            print_json(result.as_json())
        if not no_wait:
            out.print("the stack keeps running for you to look around: Ctrl-C to stop")
            await asyncio.Event().wait()
        return result

    result = _run_stack(options, body)
    if result is not None and result.progress.status is not CampaignStatus.COMPLETED:
        fail(f"the demo campaign ended {result.progress.status.value}")
