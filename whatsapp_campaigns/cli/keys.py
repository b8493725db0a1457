"""`campaigns keys …`: API keys bound to an account and a role (SPEC §9). The key is printed
once, by `create`; the store keeps only a digest of it."""

from typing import Annotated

import typer
from rich.table import Table

from whatsapp_campaigns.cli.app import (
    AccountOption,
    JsonOption,
    console,
    errors,
    keys_app,
    open_store,
    print_json,
)
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store import api_keys


@keys_app.command("create")
def keys_create(
    role: Annotated[
        Role,
        typer.Option(
            help="admin: any account (X-Account); operator: acts on its account; viewer: reads it."
        ),
    ],
    account: AccountOption = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once: store it now, it cannot be shown again."""
    with open_store() as db:
        issued = api_keys.create_key(db, account or get_settings().default_account, role, name=name)
    if as_json:
        print_json(issued.model_dump(mode="json"))
        return
    errors.print(
        f"API key {issued.id} ({issued.role.value} of {issued.account}); shown once:",
        highlight=False,
    )
    console.print(issued.key, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    account: AccountOption = None,
    every_account: Annotated[bool, typer.Option("--all", help="Keys of every account.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The keys (never their secrets): role, name, last use, revoked."""
    with open_store() as db:
        keys = api_keys.list_keys(
            db, None if every_account else account or get_settings().default_account
        )
    if as_json:
        print_json(keys)
        return
    table = Table(title=f"{len(keys)} API keys")
    for column in ("id", "account", "role", "name", "created", "last used", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.id,
            key.account_id,
            key.role.value,
            key.name or "",
            key.created_at.isoformat(timespec="seconds"),
            key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "",
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
    as_json: JsonOption = False,
) -> None:
    """Revoke a key for good: requests with it answer 401 from now on."""
    with open_store() as db:
        key = api_keys.revoke_key(db, key_id)
    if as_json:
        print_json(key)
    else:
        console.print(f"API key {key.id} ({key.role.value} of {key.account_id}) revoked")
