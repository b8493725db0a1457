"""Each account's WhatsApp connection (SPEC §9): its WhatsApp Business Account id and its
credentials, encrypted with `SecretBox` before they reach the store."""

from sqlalchemy import select

from whatsapp_campaigns.domain.tenancy import WhatsAppCredentials
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import upsert
from whatsapp_campaigns.store.errors import Conflict, InvalidInput, NotFound
from whatsapp_campaigns.store.models import Account, WhatsAppConnection, utcnow
from whatsapp_campaigns.store.secrets import SecretBox


def connect_account(
    db: Database,
    box: SecretBox,
    account_id: str,
    *,
    waba_id: str,
    access_token: str,
    app_secret: str | None = None,
) -> None:
    """Store (or replace) the account's connection. A WABA serves one account only."""
    waba_id = waba_id.strip()
    if not waba_id:
        raise InvalidInput("the WhatsApp Business Account id (--waba-id) is empty")
    if not access_token.strip():
        raise InvalidInput("the access token is empty")
    row = {
        "account_id": account_id,
        "waba_id": waba_id,
        "access_token_encrypted": box.encrypt(access_token.strip()),
        "app_secret_encrypted": box.encrypt(app_secret.strip()) if app_secret else None,
        "updated_at": utcnow(),
    }
    with db.session() as session:
        if session.get(Account, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        owner = session.scalar(
            select(WhatsAppConnection.account_id).where(
                WhatsAppConnection.waba_id == waba_id, WhatsAppConnection.account_id != account_id
            )
        )
        if owner is not None:
            raise Conflict(f"WhatsApp Business Account {waba_id} is connected to another account")
        upsert(
            session,
            WhatsAppConnection,
            [row],
            keys=["account_id"],
            update=[
                "waba_id",
                "access_token_encrypted",
                "app_secret_encrypted",
                "updated_at",
            ],
        )


def get_credentials(db: Database, box: SecretBox, account_id: str) -> WhatsAppCredentials | None:
    """The account's decrypted credentials; None when it has no stored connection."""
    with db.session() as session:
        row = session.get(WhatsAppConnection, account_id)
        return _credentials(row, box) if row is not None else None


def account_for_waba(db: Database, waba_id: str) -> str | None:
    """Which account a WhatsApp Business Account id (a webhook's entry id) belongs to."""
    with db.session() as session:
        return session.scalar(
            select(WhatsAppConnection.account_id).where(WhatsAppConnection.waba_id == waba_id)
        )


def stored_app_secrets(db: Database, box: SecretBox) -> list[str]:
    """Every distinct app secret stored with a connection (webhook signatures may use any)."""
    with db.session() as session:
        rows = session.execute(
            select(WhatsAppConnection.account_id, WhatsAppConnection.app_secret_encrypted).where(
                WhatsAppConnection.app_secret_encrypted.is_not(None)
            )
        ).all()
    secrets = {
        box.decrypt(encrypted, what=f"the app secret of account {account_id}")
        for account_id, encrypted in rows
        if encrypted is not None
    }
    return sorted(secrets)


def verify_secret_key(db: Database, box: SecretBox) -> int:
    """Decrypt every stored credential once: processes call this at start-up so that a missing
    or wrong CAMPAIGNS_SECRET_KEY is one clear error then, not a failed send later.

    Returns how many connections were checked; raises `SecretKeyError` naming the account."""
    with db.session() as session:
        rows = list(session.scalars(select(WhatsAppConnection)))
        for row in rows:
            _credentials(row, box)
    return len(rows)


def _credentials(row: WhatsAppConnection, box: SecretBox) -> WhatsAppCredentials:
    account = row.account_id
    return WhatsAppCredentials(
        account_id=account,
        waba_id=row.waba_id,
        access_token=box.decrypt(
            row.access_token_encrypted, what=f"the access token of account {account}"
        ),
        app_secret=(
            box.decrypt(row.app_secret_encrypted, what=f"the app secret of account {account}")
            if row.app_secret_encrypted
            else None
        ),
    )
