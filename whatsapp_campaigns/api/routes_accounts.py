"""`/accounts` and `/keys`: onboarding a business (SPEC §9). Admin keys only: an operator or a
viewer manages neither accounts nor keys."""

import asyncio
import logging

from fastapi import APIRouter, Depends, Response, status

from whatsapp_campaigns.api.auth import AdminDep, require_admin
from whatsapp_campaigns.api.dependencies import AccountDep, DatabaseDep, SettingsDep
from whatsapp_campaigns.api.schemas import AccountCreate, ConnectionRequest, KeyCreate
from whatsapp_campaigns.domain.tenancy import AccountInfo, ApiKeyInfo, IssuedKey
from whatsapp_campaigns.store import accounts, api_keys
from whatsapp_campaigns.store.connections import connect_account
from whatsapp_campaigns.whatsapp.connections import secret_box, verify_connection

log = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_admin)])


@router.post(
    "/accounts",
    summary="Create an account",
    tags=["accounts"],
    status_code=status.HTTP_201_CREATED,
)
async def create_account(body: AccountCreate, db: DatabaseDep, admin: AdminDep) -> AccountInfo:
    """A new account: no credits, no WhatsApp connection, no numbers yet."""
    account = await asyncio.to_thread(accounts.create_account, db, body.id, body.name)
    log.info("account %s created by key %s", account.id, admin.key_id)
    return account


@router.get("/accounts", summary="List accounts", tags=["accounts"])
async def list_accounts(db: DatabaseDep) -> list[AccountInfo]:
    return await asyncio.to_thread(accounts.list_accounts, db)


@router.get("/accounts/{account_id}", summary="An account", tags=["accounts"])
async def get_account(account_id: str, db: DatabaseDep) -> AccountInfo:
    """The account; whether a WhatsApp token is stored, never the token."""
    return await asyncio.to_thread(accounts.get_account, db, account_id)


@router.put("/accounts/{account_id}/connection", summary="Connect to WhatsApp", tags=["accounts"])
async def connect(
    account_id: str, body: ConnectionRequest, db: DatabaseDep, settings: SettingsDep
) -> AccountInfo:
    """Store the account's WhatsApp Business Account and access token (encrypted) after
    checking the token with Meta: Meta's refusal answers 502 with its title, storing nothing."""
    await asyncio.to_thread(accounts.get_account, db, account_id)  # 404 before calling Meta
    token = body.access_token.get_secret_value()
    await verify_connection(settings, body.waba_id, token)
    await asyncio.to_thread(
        connect_account,
        db,
        secret_box(settings),
        account_id,
        waba_id=body.waba_id,
        access_token=token,
        app_secret=body.app_secret.get_secret_value() if body.app_secret else None,
    )
    log.info("account %s connected to WhatsApp Business Account %s", account_id, body.waba_id)
    return await asyncio.to_thread(accounts.get_account, db, account_id)


@router.post(
    "/keys", summary="Create an API key", tags=["keys"], status_code=status.HTTP_201_CREATED
)
async def create_key(body: KeyCreate, db: DatabaseDep, account: AccountDep) -> IssuedKey:
    """The key is in this answer only: store it now. Its account is `account`, else the one
    the request acts on."""
    issued = await asyncio.to_thread(
        api_keys.create_key, db, body.account or account, body.role, body.name
    )
    log.info("API key %s (%s of %s) created", issued.id, issued.role.value, issued.account)
    return issued


@router.get("/keys", summary="List API keys", tags=["keys"])
async def list_keys(db: DatabaseDep, account: str | None = None) -> list[ApiKeyInfo]:
    """Every key (of `account` when given), without secrets."""
    return await asyncio.to_thread(api_keys.list_keys, db, account)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke an API key",
    tags=["keys"],
    status_code=status.HTTP_204_NO_CONTENT,
)
async def revoke_key(key_id: str, db: DatabaseDep) -> Response:
    key = await asyncio.to_thread(api_keys.revoke_key, db, key_id)
    log.info("API key %s (%s of %s) revoked", key.id, key.role.value, key.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
