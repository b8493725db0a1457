"""Store commands: audiences, templates and credits. They work while Temporal is down."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from whatsapp_campaigns.cli.app import (
    AccountOption,
    JsonOption,
    audience_app,
    console,
    credits_app,
    errors,
    fail,
    open_store,
    print_json,
    provider_errors,
    templates_app,
)
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.templates import ParameterFormat, template_parts
from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store.accounts import get_account


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
    """Import a CSV audience: other columns become template variables. Needs only the store."""
    from whatsapp_campaigns.store.audiences import AudienceImportError, import_audience_csv

    settings = get_settings()
    progress = Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,  # stdout stays clean for --json
        transient=True,
        disable=not errors.is_terminal,
    )
    with open_store() as db:
        try:
            with progress:
                task = progress.add_task(file.name, total=file.stat().st_size)
                result = import_audience_csv(
                    db,
                    account or settings.default_account,
                    name,
                    file,
                    phone_column=phone_column,
                    default_region=region or settings.default_region,
                    progress=lambda done: progress.update(task, completed=done),
                )
        except AudienceImportError as error:  # after the bar is gone: one line
            fail(str(error))
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
    """Fetch every template of the account's WhatsApp Business Account into the store."""
    from whatsapp_campaigns.whatsapp.template_sync import sync_templates

    settings = get_settings()
    account_id = account or settings.default_account
    with open_store() as db, provider_errors("the template sync"):
        get_account(db, account_id)  # unknown account: say so before calling Meta
        waba_id, templates = asyncio.run(sync_templates(db, settings, account_id))
    if as_json:
        synced = [t.model_dump(mode="json") for t in templates]
        print_json({"account": account_id, "synced": len(templates), "templates": synced})
        return
    console.print(
        f"{len(templates)} templates synced from WhatsApp Business Account {waba_id} "
        f"for account {account_id}"
    )
    _print_templates(templates)


@templates_app.command("list")
def templates_list(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """List the templates as last synced: approval status, parts (header, body, footer,
    buttons), variables, and the kinds campaigns cannot send yet."""
    from whatsapp_campaigns.store import catalog

    with open_store() as db:
        templates = catalog.list_templates(db, account or get_settings().default_account)
    if as_json:
        print_json(templates)
    elif not templates:
        errors.print("no templates: run `campaigns templates sync` first")
    else:
        _print_templates(templates)


def _print_templates(templates: list[Template]) -> None:
    table = Table(title=f"{len(templates)} templates")
    table.add_column("name", no_wrap=True)
    table.add_column("lang")
    table.add_column("category")
    table.add_column("status", no_wrap=True)
    table.add_column("parts")
    table.add_column("variables")
    for template in templates:
        parts = template_parts(template.components)
        if template.unsupported:
            parts += f" [red](not sendable: {', '.join(template.unsupported)})[/red]"
        variables = ", ".join(template.variables)
        if template.format is ParameterFormat.POSITIONAL and variables:
            variables += " (positional)"
        table.add_row(
            template.name,
            template.language,
            template.category.value.lower(),
            template.status.value,
            parts,
            variables,
        )
    console.print(table)


# ------------------------------------------------------------------------------- credits


@credits_app.command("show")
def credits_show(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """Show the credit balance."""
    from whatsapp_campaigns.store import accounts

    account_id = account or get_settings().default_account
    with open_store() as db:
        balance = accounts.get_balance(db, account_id)
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

    account_id = account or get_settings().default_account
    with open_store() as db:
        balance = accounts.add_credits(db, account_id, amount, note="cli")
    if as_json:
        print_json({"account": account_id, "balance": balance})
    else:
        console.print(f"{account_id}: {balance:,} credits")
