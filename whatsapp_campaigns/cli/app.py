"""The `campaigns` Typer app, its command groups, and what every command shares: the output
consoles, one-line failures, JSON printing, the client and store openers.

Every read command takes `--json` (machine-readable, same objects as the API); every refusal
or bad input exits non-zero with one line on stderr saying why.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from whatsapp_campaigns.settings import Settings, get_settings
from whatsapp_campaigns.starter import (
    CampaignNotFound,
    CampaignRefused,
    CampaignsClient,
    CampaignUnavailable,
)
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import Conflict, InsufficientCredits, InvalidInput, NotFound
from whatsapp_campaigns.store.secrets import SecretKeyError

app = typer.Typer(
    help="WhatsApp template campaigns on Temporal: create, schedule, steer and watch them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The campaign store (database).", no_args_is_help=True)
templates_app = typer.Typer(
    help="WhatsApp message templates (SPEC §10: media headers, buttons, named or positional).",
    no_args_is_help=True,
)
audience_app = typer.Typer(help="Audiences (recipient lists).", no_args_is_help=True)
credits_app = typer.Typer(help="The account's credit balance.", no_args_is_help=True)
accounts_app = typer.Typer(
    help="Accounts (tenants) and their WhatsApp connection.", no_args_is_help=True
)
senders_app = typer.Typer(
    help="WhatsApp sender numbers, read from Meta: rate, tier, quality.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys bound to an account and a role.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(senders_app, name="senders")
app.add_typer(keys_app, name="keys")
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


def run(
    coroutine_factory: Callable[[CampaignsClient], Awaitable[T]],
    *,
    temporal_on_demand: bool = False,
) -> T:
    """Connect a client, run one coroutine with it, turn known errors into one-line exits.

    `temporal_on_demand`: connect to Temporal at its first use, for read-only commands that
    may not need it (a finished campaign is read from the store). Commands that change
    anything connect first, so that an unreachable Temporal stops them before the store
    changes."""

    async def main() -> T:
        client = await _client(get_settings(), lazy=temporal_on_demand)
        try:
            return await coroutine_factory(client)
        finally:
            await client.close()

    return guard(main())


def guard(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except (CampaignNotFound, NotFound) as error:
        fail(str(error).strip("'\""))
    except CampaignRefused as error:
        if error.invalid_values is not None:
            print_invalid_values(error.invalid_values)
        fail(str(error))
    except (
        CampaignUnavailable,
        InvalidInput,
        InsufficientCredits,
        AudienceImportError,
        SecretKeyError,
    ) as error:
        fail(str(error))
    except ConnectionError as error:
        fail(f"cannot reach Temporal or the database: {error}")
    except RuntimeError as error:
        if "Failed client connect" in str(error):
            fail(f"cannot reach Temporal at {get_settings().temporal_address}: is it running?")
        raise


async def _client(settings: Settings, *, lazy: bool = False) -> CampaignsClient:
    return await CampaignsClient.connect(settings, lazy=lazy)


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_invalid_values(report: dict[str, Any]) -> None:
    """Recipients whose template values break SPEC §10's rules: counts per rule, first rows."""
    errors.print(
        f"[red]{report['invalid']:,}[/red] of {report['checked']:,} recipients have invalid "
        "template values:",
        highlight=False,
    )
    rules = Table(show_edge=False)
    rules.add_column("rule")
    rules.add_column("recipients", justify="right")
    for rule, count in report["by_rule"].items():
        rules.add_row(rule, f"{count:,}")
    errors.print(rules)
    rows = Table(title="first rows", show_edge=False)
    for column in ("row", "phone", "variable", "rule", "problem"):
        rows.add_column(column)
    for item in report["first_rows"]:
        for problem in item["problems"]:
            rows.add_row(
                str(item["row"] or "?"),
                item["phone"],
                problem["variable"],
                problem["rule"],
                problem["detail"],
            )
    errors.print(rows)


def parse_time(value: str, option: str) -> datetime:
    """An ISO 8601 time with a UTC offset (2026-12-01T09:00:00+01:00)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: {value!r} is not an ISO 8601 time (e.g. 2026-12-01T09:00:00+01:00)")
    if parsed.tzinfo is None:
        fail(f"{option}: {value!r} has no UTC offset; add one, e.g. +00:00 or Z")
    return parsed


HostOption = Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every one).")]


@contextmanager
def open_store() -> Iterator[Database]:
    """The settings' store, for commands that need no Temporal; store errors become one line."""
    db = Database(get_settings().database_url)
    try:
        yield db
    except NotFound as error:
        fail(str(error).strip("'\""))
    except (InvalidInput, InsufficientCredits, Conflict) as error:
        fail(str(error))
    finally:
        db.dispose()


@contextmanager
def provider_errors(what: str) -> Iterator[None]:
    """WhatsApp's refusal of `what` (or a missing/wrong secret key) as one line: Meta's code and
    title, never the token."""
    from whatsapp_campaigns.store.secrets import SecretKeyError
    from whatsapp_campaigns.whatsapp.provider import ProviderError

    try:
        yield
    except ProviderError as error:
        code = f" (code {error.code})" if error.code is not None else ""
        fail(f"WhatsApp refused {what}: {error.title}{code}")
    except SecretKeyError as error:
        fail(str(error))
