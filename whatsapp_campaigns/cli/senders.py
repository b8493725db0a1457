"""`campaigns senders …`: the WhatsApp numbers an account sends from, as Meta describes them
(SPEC §9): `add` and `sync` read the number from the Graph API, its rate follows its throughput
level (STANDARD 80 msg/s, HIGH 1,000; `--rate` caps it lower)."""

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from whatsapp_campaigns.cli.app import (
    AccountOption,
    JsonOption,
    console,
    open_store,
    print_json,
    provider_errors,
    senders_app,
)
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store import catalog
from whatsapp_campaigns.store.accounts import get_account
from whatsapp_campaigns.store.db import Database

PhoneNumberIdArgument = Annotated[
    str, typer.Argument(help="The number's phone number id in Meta's WhatsApp Manager.")
]


@senders_app.command("add")
def senders_add(
    phone_number_id: PhoneNumberIdArgument,
    account: AccountOption = None,
    rate: Annotated[
        int | None,
        typer.Option(
            min=1, max=1000, help="Cap the rate (msg/s) below the number's throughput level."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Register a number of the account's WhatsApp Business Account, as Meta describes it."""
    account_id = account or get_settings().default_account
    with open_store() as db, provider_errors(f"phone number id {phone_number_id}"):
        get_account(db, account_id)  # unknown account: say so before calling Meta
        info = asyncio.run(_read_numbers(db, account_id, [phone_number_id]))[0]
        sender = catalog.register_sender(db, account_id, info, rate_cap=rate)
    if as_json:
        print_json(sender)
    else:
        console.print(
            f"sender [bold]{sender.phone_number_id}[/bold] ({sender.display_number}) "
            f"added to {account_id}: {sender.rate_per_second} msg/s"
        )


@senders_app.command("list")
def senders_list(account: AccountOption = None, as_json: JsonOption = False) -> None:
    """The account's numbers: rate, throughput level, messaging tier, quality, throttle."""
    with open_store() as db:
        senders = catalog.list_senders(db, account or get_settings().default_account)
    if as_json:
        print_json(senders)
    else:
        console.print(senders_table(senders))


@senders_app.command("sync")
def senders_sync(
    phone_number_id: Annotated[
        str | None, typer.Argument(help="One number (default: all of the account's).")
    ] = None,
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-read numbers from Meta: throughput level, messaging tier, quality rating."""
    account_id = account or get_settings().default_account
    with open_store() as db, provider_errors("the number sync"):
        if phone_number_id is not None:
            known = [catalog.get_sender(db, phone_number_id)]
            account_id = known[0].account_id
        else:
            known = catalog.list_senders(db, account_id)
        caps = {s.phone_number_id: s.rate_cap for s in known}
        infos = asyncio.run(_read_numbers(db, account_id, list(caps)))
        senders = [
            catalog.register_sender(db, account_id, info, rate_cap=caps[info.phone_number_id])
            for info in infos
        ]
    if as_json:
        print_json(senders)
    else:
        console.print(senders_table(senders))


@senders_app.command("remove")
def senders_remove(phone_number_id: PhoneNumberIdArgument, as_json: JsonOption = False) -> None:
    """Take a number out of service (refused while an unfinished campaign uses it)."""
    with open_store() as db:
        sender = catalog.remove_sender(db, phone_number_id)
    if as_json:
        print_json(sender)
    else:
        console.print(f"sender {sender.phone_number_id} removed from {sender.account_id}")


def senders_table(senders: list[Sender]) -> Table:
    table = Table(title=f"{len(senders)} sender numbers")
    for column in ("id", "number", "name", "msg/s", "throughput", "tier", "quality", "throttled"):
        table.add_column(column)
    for sender in senders:
        capped = f" (cap {sender.rate_cap})" if sender.rate_cap else ""
        table.add_row(
            sender.phone_number_id,
            sender.display_number,
            sender.verified_name or "",
            f"{sender.rate_per_second}{capped}",
            sender.throughput_level or "",
            sender.messaging_limit or f"{sender.tier:,}",
            sender.quality_rating or "",
            sender.throttled_until.isoformat(timespec="minutes") if sender.throttled_until else "",
        )
    return table


async def _read_numbers(
    db: Database, account_id: str, phone_number_ids: list[str]
) -> list[PhoneNumberInfo]:
    from whatsapp_campaigns.whatsapp.connections import AccountProviders

    providers = AccountProviders(get_settings(), db)
    try:
        provider = await providers.provider(account_id)
        return [await provider.get_phone_number(number) for number in phone_number_ids]
    finally:
        await providers.aclose()
