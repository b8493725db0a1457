"""`campaigns accounts …`: create accounts and connect them to WhatsApp (SPEC §9). Store-only
commands: they work while Temporal is down. A token is read from standard input or from the
environment variable `--token-env` names, never from argv, and is never printed."""

import asyncio
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from whatsapp_campaigns.cli.app import (
    JsonOption,
    accounts_app,
    console,
    fail,
    open_store,
    print_json,
    provider_errors,
)
from whatsapp_campaigns.domain.tenancy import AccountInfo
from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store import accounts

AccountArgument = Annotated[str, typer.Argument(help="Account id, e.g. acme.")]


@accounts_app.command("create")
def accounts_create(
    account_id: AccountArgument,
    name: Annotated[str, typer.Option(help="Display name of the business.")],
    as_json: JsonOption = False,
) -> None:
    """Create an account: no credits, no WhatsApp connection, no numbers yet."""
    with open_store() as db:
        account = accounts.create_account(db, account_id, name)
    if as_json:
        print_json(account)
    else:
        console.print(f"account [bold]{account.id}[/bold] ({account.name}) created")
        console.print(f"next: campaigns accounts connect {account.id} --waba-id WABA_ID")


@accounts_app.command("list")
def accounts_list(as_json: JsonOption = False) -> None:
    """Every account, whether it is connected to WhatsApp, its numbers and credits."""
    with open_store() as db:
        items = accounts.list_accounts(db)
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} accounts")
    for column in ("id", "name", "WhatsApp Business Account", "senders", "credits"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.id,
            item.name,
            item.waba_id or "[dim]not connected[/dim]",
            str(item.senders),
            f"{item.credit_balance:,}",
        )
    console.print(table)


@accounts_app.command("show")
def accounts_show(account_id: AccountArgument, as_json: JsonOption = False) -> None:
    """One account (its token is never shown: only whether one is stored)."""
    with open_store() as db:
        account = accounts.get_account(db, account_id)
    if as_json:
        print_json(account)
    else:
        console.print(_account_table(account))


def _account_table(account: AccountInfo) -> Table:
    table = Table(title=f"account {account.id}", show_header=False)
    table.add_row("name", account.name)
    table.add_row("WhatsApp Business Account", account.waba_id or "not connected")
    table.add_row("access token", "stored (encrypted)" if account.connected else "none")
    table.add_row("app secret", "own (encrypted)" if account.has_app_secret else "default")
    table.add_row("sender numbers", str(account.senders))
    table.add_row("credits", f"{account.credit_balance:,}")
    table.add_row("created", account.created_at.isoformat(timespec="seconds"))
    return table


@accounts_app.command("connect")
def accounts_connect(
    account_id: AccountArgument,
    waba_id: Annotated[str, typer.Option("--waba-id", help="WhatsApp Business Account id.")],
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            help="Name of an environment variable holding the access token "
            "(default: read it from standard input).",
        ),
    ] = None,
    app_secret_env: Annotated[
        str | None,
        typer.Option(
            "--app-secret-env",
            help="Name of an environment variable holding the Meta app secret that signs this "
            "account's webhooks (default: WHATSAPP_APP_SECRET).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Connect an account to its WhatsApp Business Account. The token is checked with Meta
    (the account's templates are read) before it is stored, encrypted."""
    from whatsapp_campaigns.store.connections import connect_account
    from whatsapp_campaigns.whatsapp.connections import secret_box, verify_connection

    token = _secret_from_env(token_env, "--token-env") if token_env else _token_from_stdin()
    app_secret = _secret_from_env(app_secret_env, "--app-secret-env") if app_secret_env else None
    settings = get_settings()
    with open_store() as db, provider_errors("the access token"):
        accounts.get_account(db, account_id)  # unknown account: say so before calling Meta
        templates = asyncio.run(verify_connection(settings, waba_id, token))
        connect_account(
            db,
            secret_box(settings),
            account_id,
            waba_id=waba_id,
            access_token=token,
            app_secret=app_secret,
        )
        account = accounts.get_account(db, account_id)
    if as_json:
        print_json(account)
        return
    console.print(
        f"account [bold]{account_id}[/bold] connected to WhatsApp Business Account {waba_id} "
        f"({templates} templates visible); token stored encrypted"
    )
    console.print(f"next: campaigns senders add PHONE_NUMBER_ID --account {account_id}")


@accounts_app.command("secret-key")
def accounts_secret_key() -> None:
    """Print a new random key for CAMPAIGNS_SECRET_KEY (it encrypts tokens at rest)."""
    from whatsapp_campaigns.store.secrets import generate_secret_key

    sys.stdout.write(generate_secret_key() + "\n")


def _secret_from_env(variable: str, option: str) -> str:
    value = os.environ.get(variable, "").strip()
    if not value:
        fail(f"{option}: the environment variable {variable} is not set or empty")
    return value


def _token_from_stdin() -> str:
    if sys.stdin.isatty():
        token: str = typer.prompt("WhatsApp access token", hide_input=True, err=True)
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        fail("no access token on standard input (or name a variable with --token-env)")
    return token
