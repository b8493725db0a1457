"""`campaigns`: the command line for operators and scripts (SPEC §6).

Every read command takes `--json` (machine-readable, same objects as the API); every refusal
or bad input exits non-zero with one line on stderr saying why.
"""

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from whatsapp_campaigns.domain.models import CampaignDraft, Progress, Template
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.settings import Settings, get_settings
from whatsapp_campaigns.starter import CampaignNotFound, CampaignRefused, CampaignsClient
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.errors import InsufficientCredits, InvalidInput, NotFound

if TYPE_CHECKING:
    from whatsapp_campaigns.devstack import DevStack, StackOptions

app = typer.Typer(
    help="WhatsApp template campaigns on Temporal: create, schedule, steer and watch them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The campaign store (database).", no_args_is_help=True)
templates_app = typer.Typer(help="WhatsApp message templates.", no_args_is_help=True)
audience_app = typer.Typer(help="Audiences (recipient lists).", no_args_is_help=True)
credits_app = typer.Typer(help="The account's credit balance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(templates_app, name="templates")
app.add_typer(audience_app, name="audience")
app.add_typer(credits_app, name="credits")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AccountOption = Annotated[
    str | None,
    typer.Option("--account", help="Account to act on (default: CAMPAIGNS_DEFAULT_ACCOUNT)."),
]
ByOption = Annotated[str | None, typer.Option("--by", help="Who is acting, for the timeline.")]


def fail(message: str) -> NoReturn:
    # soft_wrap: one line whatever the terminal's width (scripts grep it; pipes are 80 wide).
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def run(coroutine_factory: Callable[[CampaignsClient], Awaitable[T]]) -> T:
    """Connect a client, run one coroutine with it, turn known errors into one-line exits."""

    async def main() -> T:
        client = await _client(get_settings())
        try:
            return await coroutine_factory(client)
        finally:
            await client.close()

    return _guard(main())


def _guard(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except (CampaignNotFound, NotFound) as error:
        fail(str(error).strip("'\""))
    except (CampaignRefused, InvalidInput, InsufficientCredits, AudienceImportError) as error:
        fail(str(error))
    except ConnectionError as error:
        fail(f"cannot reach Temporal or the database: {error}")
    except RuntimeError as error:
        if "Failed client connect" in str(error):
            fail(f"cannot reach Temporal at {get_settings().temporal_address}: is it running?")
        raise


async def _client(settings: Settings) -> CampaignsClient:
    return await CampaignsClient.connect(settings)


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time with a UTC offset (2026-12-01T09:00:00+01:00)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00+01:00)")
    if parsed.tzinfo is None:
        fail(f"{option}: {value!r} has no UTC offset; add one, e.g. +00:00 or Z")
    return parsed


# ----------------------------------------------------------------------- campaign commands


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Campaign name.")],
    template: Annotated[str, typer.Option(help="Approved WhatsApp template name.")],
    audience: Annotated[str, typer.Option(help="Audience id (from `campaigns audience import`).")],
    sender: Annotated[str, typer.Option(help="Sender phone number id.")],
    language: Annotated[str, typer.Option(help="Template language code.")] = "en",
    timezone: Annotated[str, typer.Option(help="Timezone the schedule is shown in.")] = "UTC",
    account: AccountOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a draft campaign."""
    draft = CampaignDraft(
        name=name,
        template_name=template,
        language=language,
        sender_phone_number_id=sender,
        audience_id=audience,
        timezone=timezone,
    )
    campaign = run(lambda c: c.create_draft(draft, account_id=account, by=by))
    if as_json:
        print_json(campaign)
    else:
        console.print(f"created draft [bold]{campaign.id}[/bold] ({campaign.name})")


@app.command()
def schedule(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    at: Annotated[str | None, typer.Option("--at", help="Send time, ISO 8601 with offset.")] = None,
    now: Annotated[bool, typer.Option("--now", help="Send now.")] = False,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a draft (--at TIME) or launch it (--now). Runs the preflight checks first."""
    if (at is None) == (not now):
        fail("give exactly one of --at TIME or --now")
    send_at = parse_time(at, "--at") if at else None
    campaign = run(lambda c: c.schedule(campaign_id, send_at, by=by))
    if as_json:
        print_json(campaign)
    else:
        when = campaign.send_at.isoformat() if campaign.send_at else "now"
        console.print(f"campaign {campaign.id} scheduled for {when}")


def _steer(
    action: Callable[[CampaignsClient], Awaitable[Progress]], as_json: bool, verb: str
) -> None:
    progress = run(action)
    if as_json:
        print_json(progress)
    else:
        console.print(f"campaign {progress.campaign_id} {verb}: now [bold]{progress.status}[/bold]")


ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (shown in the timeline).")]


@app.command()
def pause(
    campaign_id: str, reason: ReasonOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Pause sending: no new message starts; in-flight sends finish."""
    _steer(lambda c: c.pause(campaign_id, reason=reason, by=by), as_json, "paused")


@app.command()
def resume(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused campaign where it stopped."""
    _steer(lambda c: c.resume(campaign_id, by=by), as_json, "resumed")


@app.command()
def cancel(
    campaign_id: str, reason: ReasonOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Cancel for good (refused within 5 minutes of a scheduled send time)."""
    _steer(lambda c: c.cancel(campaign_id, reason=reason, by=by), as_json, "cancelled")


@app.command()
def reschedule(
    campaign_id: str,
    at: Annotated[str, typer.Option("--at", help="New send time, ISO 8601 with offset.")],
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the send time of a scheduled campaign."""
    send_at = parse_time(at, "--at")
    _steer(lambda c: c.reschedule(campaign_id, send_at, by=by), as_json, "rescheduled")


@app.command()
def status(campaign_id: str, as_json: JsonOption = False) -> None:
    """Show a campaign's progress (the workflow's `progress` query)."""
    progress = run(lambda c: c.progress(campaign_id))
    if as_json:
        print_json(progress)
        return
    console.print(render_progress(progress))


def render_progress(progress: Progress) -> Table:
    table = Table(
        title=f"campaign {progress.campaign_id}: {progress.status.value}", show_header=False
    )
    table.add_row("complete", f"{progress.percent_complete:.1f}% of {progress.total:,}")
    if progress.status_reason:
        table.add_row("reason", progress.status_reason)
    if progress.throttled_until:
        table.add_row("throttled until", progress.throttled_until.isoformat())
    for message_status in MessageStatus:
        count = progress.counts.get(message_status, 0)
        if count:
            table.add_row(message_status.value, f"{count:,}")
    for error in progress.errors[:5]:
        table.add_row(f"error {error.code}", f"{error.title} ({error.count:,})")
    return table


@app.command()
def watch(
    campaign_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Live progress bar with the message breakdown, until the campaign ends."""
    from whatsapp_campaigns.progress_view import watch_campaign

    async def follow(client: CampaignsClient) -> Progress:
        await client.get(campaign_id)  # an unknown id: one error line, not an empty bar first
        return await watch_campaign(client, campaign_id, interval=interval, console=console)

    final = run(follow)
    console.print(render_progress(final))


@app.command("list")
def list_campaigns(
    status_filter: Annotated[
        list[CampaignStatus] | None, typer.Option("--status", help="Only these statuses.")
    ] = None,
    sender: Annotated[str | None, typer.Option(help="Only this sender number id.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    search: Annotated[str | None, typer.Option(help="Name contains, or exact id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """List campaigns, newest first."""
    since_at = parse_time(since, "--since") if since else None
    until_at = parse_time(until, "--until") if until else None
    items, total = run(
        lambda c: c.list(
            account_id=account,
            statuses=status_filter,
            sender=sender,
            since=since_at,
            until=until_at,
            search=search,
            limit=limit,
        )
    )
    if as_json:
        print_json({"items": [i.model_dump(mode="json") for i in items], "total": total})
        return
    table = Table(title=f"{len(items)} of {total} campaigns")
    for column in ("id", "name", "status", "send at", "sender"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.id,
            item.name,
            item.status.value,
            item.send_at.isoformat() if item.send_at else "",
            item.sender_phone_number_id,
        )
    console.print(table)


@app.command()
def report(
    campaign_id: str,
    out: Annotated[Path | None, typer.Option("--out", help="CSV file (default: stdout).")] = None,
) -> None:
    """CSV report of every message: status, error, timestamps."""
    from whatsapp_campaigns.store import campaigns, reports
    from whatsapp_campaigns.store.db import Database

    settings = get_settings()
    db = Database(settings.database_url)
    try:
        campaigns.get_campaign(db, campaign_id)  # not found: no header, no empty file first
        if out is None:
            reports.write_report_csv(db, campaign_id, sys.stdout)
        else:
            with out.open("w", newline="") as file:
                rows = reports.write_report_csv(db, campaign_id, file)
            errors.print(f"{rows:,} messages written to {out}")
    except NotFound as error:
        fail(str(error).strip("'\""))
    finally:
        db.dispose()


@app.command("retry-failed")
def retry_failed(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Send the failed messages of a finished campaign again, as a new run."""
    campaign = run(lambda c: c.retry_failed(campaign_id, by=by))
    if as_json:
        print_json(campaign)
    else:
        console.print(f"campaign {campaign.id}: run {campaign.run_number} started")


@app.command()
def duplicate(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Copy a campaign into a new draft."""
    campaign = run(lambda c: c.duplicate(campaign_id, by=by))
    if as_json:
        print_json(campaign)
    else:
        console.print(f"new draft [bold]{campaign.id}[/bold] ({campaign.name})")


@app.command("test-send")
def test_send(
    campaign_id: str,
    to: Annotated[str, typer.Option("--to", help="Phone number to send the test to.")],
    as_json: JsonOption = False,
) -> None:
    """Send the campaign's message to one number now, before scheduling it."""
    message_id = run(lambda c: c.test_send(campaign_id, to))
    if as_json:
        print_json({"id": message_id, "to": to})
    else:
        console.print(f"test message sent to {to}: {message_id}")


# ----------------------------------------------------------------------------- audiences


@audience_app.command("import")
def audience_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a phone column.", exists=True)],
    name: Annotated[str, typer.Option(help="Audience name.")],
    region: Annotated[
        str | None, typer.Option(help="Region for numbers without +country code (e.g. US).")
    ] = None,
    phone_column: Annotated[str, typer.Option(help="Header of the phone column.")] = "phone",
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a CSV audience: other columns become template variables."""
    result = run(
        lambda c: c.import_audience(
            name, str(file), account_id=account, phone_column=phone_column, region=region
        )
    )
    audience = result.audience
    if as_json:
        print_json(
            {
                "id": audience.id,
                "valid": audience.valid,
                "invalid": audience.invalid,
                "duplicates": audience.duplicates,
                "suppressed": audience.suppressed,
                "invalid_rows": [r.model_dump() for r in result.invalid_rows[:100]],
            }
        )
        return
    console.print(
        f"audience [bold]{audience.id}[/bold]: {audience.valid:,} valid, "
        f"{audience.invalid:,} invalid, {audience.duplicates:,} duplicates, "
        f"{audience.suppressed:,} suppressed"
    )
    for row in result.invalid_rows[:10]:
        errors.print(f"  row {row.row_number}: {row.value!r}: {row.reason}", highlight=False)


# ----------------------------------------------------------------------------- templates


@templates_app.command("sync")
def templates_sync(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Fetch every template of WHATSAPP_BUSINESS_ACCOUNT_ID from WhatsApp into the store."""
    from whatsapp_campaigns.store.db import Database
    from whatsapp_campaigns.whatsapp.provider import ProviderError
    from whatsapp_campaigns.whatsapp.template_sync import sync_templates

    settings = get_settings()
    account_id = account or settings.default_account
    db = Database(settings.database_url)
    try:
        templates = asyncio.run(sync_templates(db, settings, account_id))
    except ProviderError as error:
        fail(f"WhatsApp refused the template sync: {error.title} (code {error.code})")
    except InvalidInput as error:
        fail(str(error))
    finally:
        db.dispose()
    if as_json:
        synced = [t.model_dump(mode="json") for t in templates]
        print_json({"account": account_id, "synced": len(templates), "templates": synced})
        return
    console.print(
        f"{len(templates)} templates synced from {settings.whatsapp_business_account_id} "
        f"({settings.provider}) for account {account_id}"
    )
    _print_templates(templates)


@templates_app.command("list")
def templates_list(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """List the templates as last synced, with their approval status."""
    from whatsapp_campaigns.store import catalog
    from whatsapp_campaigns.store.db import Database

    settings = get_settings()
    db = Database(settings.database_url)
    try:
        templates = catalog.list_templates(db, account or settings.default_account)
    finally:
        db.dispose()
    if as_json:
        print_json(templates)
    elif not templates:
        errors.print("no templates: run `campaigns templates sync` first")
    else:
        _print_templates(templates)


def _print_templates(templates: list[Template]) -> None:
    table = Table(title=f"{len(templates)} templates")
    for column in ("name", "language", "category", "status", "variables"):
        table.add_column(column)
    for template in templates:
        table.add_row(
            template.name,
            template.language,
            template.category.value,
            template.status.value,
            ", ".join(template.variables),
        )
    console.print(table)


# ------------------------------------------------------------------------------- credits


@credits_app.command("show")
def credits_show(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Show the credit balance."""
    from whatsapp_campaigns.store import accounts
    from whatsapp_campaigns.store.db import Database

    settings = get_settings()
    account_id = account or settings.default_account
    db = Database(settings.database_url)
    try:
        balance = accounts.get_balance(db, account_id)
    except NotFound as error:
        fail(str(error).strip("'\""))
    finally:
        db.dispose()
    if as_json:
        print_json({"account": account_id, "balance": balance})
    else:
        console.print(f"{account_id}: {balance:,} credits")


@credits_app.command("add")
def credits_add(
    amount: Annotated[int, typer.Argument(help="Credits to add (> 0).")],
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add credits to the balance."""
    from whatsapp_campaigns.store import accounts
    from whatsapp_campaigns.store.db import Database

    settings = get_settings()
    account_id = account or settings.default_account
    db = Database(settings.database_url)
    try:
        balance = accounts.add_credits(db, account_id, amount, note="cli")
    except (NotFound, InvalidInput) as error:
        fail(str(error).strip("'\""))
    finally:
        db.dispose()
    if as_json:
        print_json({"account": account_id, "balance": balance})
    else:
        console.print(f"{account_id}: {balance:,} credits")


# --------------------------------------------------------------------------- operations


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables (Alembic, idempotent)."""
    from whatsapp_campaigns.store.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    console.print(f"store at {settings.database_url} is up to date")


@app.command()
def worker() -> None:
    """Run a worker: the campaign workflows, their activities, one send queue per sender."""
    from whatsapp_campaigns.workers.main import configure_logging, exit_after_shutdown, run_worker

    configure_logging()
    _guard(run_worker(get_settings()))
    exit_after_shutdown()


HostOption = Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every one).")]


@app.command()
def api(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API, the WhatsApp webhooks and the dashboard (OpenAPI at /docs)."""
    import uvicorn

    from whatsapp_campaigns.api.app import create_app
    from whatsapp_campaigns.store.db import Database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    db = Database(settings.database_url)
    try:
        uvicorn.run(create_app(settings, db), host=host, port=port, log_config=None)
    finally:
        db.dispose()


@app.command()
def sandbox(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Where to POST the signed status webhooks, e.g. "
            "http://127.0.0.1:8000/webhooks/whatsapp (none without it)."
        ),
    ] = None,
    app_secret: Annotated[
        str | None,
        typer.Option(help="Secret that signs the webhooks (default: WHATSAPP_APP_SECRET)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages/s of the sandbox sender (default 80).")
    ] = None,
    latency: Annotated[float, typer.Option(help="Seconds added to every answer.")] = 0.0,
    webhook_delay: Annotated[
        float, typer.Option(help="Seconds between a message's status webhooks.")
    ] = 0.3,
) -> None:
    """Serve the WhatsApp Cloud API sandbox over HTTP (SPEC §7), for CAMPAIGNS_PROVIDER=cloud
    with WHATSAPP_API_BASE_URL=http://HOST:PORT and any WHATSAPP_ACCESS_TOKEN."""
    from whatsapp_campaigns.whatsapp.sandbox.server import run_sandbox_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if webhook_url is None:
        errors.print("no --webhook-url: status webhooks are not sent", highlight=False)
    run_sandbox_server(
        host,
        port,
        webhook_url=webhook_url,
        app_secret=app_secret if app_secret is not None else get_settings().whatsapp_app_secret,
        rate=rate,
        latency=latency,
        webhook_delay=webhook_delay,
    )


# ------------------------------------------------------------------------ embedded stack

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


def _run_stack(options: "StackOptions", body: "Callable[[DevStack], Awaitable[T]]") -> T | None:
    from whatsapp_campaigns.devstack import StackError, run_stack

    try:
        return _guard(run_stack(get_settings(), options, body))
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


if __name__ == "__main__":
    app()
