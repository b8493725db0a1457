"""API keys bound to an account and a role (SPEC §9).

A key reads `wac_<id>_<secret>`: the id (48 random bits, hex) finds the row, the secret
(256 random bits) proves it. Only the secret's SHA-256 is stored, and it is compared in
constant time. The key is shown once, by `create_key`.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import or_, select, update

from whatsapp_campaigns.domain.tenancy import ApiKeyInfo, IssuedKey, Role
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.dml import rowcount
from whatsapp_campaigns.store.errors import InvalidInput, NotFound
from whatsapp_campaigns.store.models import Account, ApiKey, utcnow

KEY_PREFIX = "wac"
_ID_BYTES = 6
_SECRET_BYTES = 32
# last_used_at is a hint for operators, not an audit log: written at most once a minute.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def create_key(db: Database, account_id: str, role: Role, name: str | None = None) -> IssuedKey:
    key_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    with db.session() as session:
        if session.get(Account, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        session.add(
            ApiKey(
                id=key_id,
                account_id=account_id,
                role=role.value,
                name=(name or "").strip()[:200] or None,
                secret_sha256=_digest(secret),
                created_at=utcnow(),
            )
        )
    return IssuedKey(
        id=key_id, key=f"{KEY_PREFIX}_{key_id}_{secret}", account=account_id, role=role
    )


def list_keys(db: Database, account_id: str | None = None) -> list[ApiKeyInfo]:
    """Every key (of one account), newest first; revoked ones included, marked."""
    statement = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if account_id is not None:
        statement = statement.where(ApiKey.account_id == account_id)
    with db.session() as session:
        return [ApiKeyInfo.model_validate(row) for row in session.scalars(statement)]


def get_key(db: Database, key_id: str) -> ApiKeyInfo:
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return ApiKeyInfo.model_validate(row)


def revoke_key(db: Database, key_id: str) -> ApiKeyInfo:
    """Revoke a key for good (revoking twice keeps the first time)."""
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        session.flush()
        return ApiKeyInfo.model_validate(row)


def key_id_of(key: str) -> str | None:
    """The id part of a key of ours, for logs and throttling (never the secret)."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    return key_id


def authenticate(db: Database, key: str) -> ApiKeyInfo | None:
    """The live key `key` is, or None (malformed, unknown, wrong secret or revoked)."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    secret = key.split("_", 2)[2]
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            _digest(secret)  # the same work as a known id: timing does not tell ids apart
            return None
        if not hmac.compare_digest(row.secret_sha256, _digest(secret)):
            return None
        if row.revoked_at is not None:
            return None
        info = ApiKeyInfo.model_validate(row)
        now = utcnow()
        rowcount(
            session,
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(
                    ApiKey.last_used_at.is_(None),
                    ApiKey.last_used_at < now - _LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=now),
        )
        return info


def has_live_keys(db: Database) -> bool:
    with db.session() as session:
        return (
            session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1))
            is not None
        )


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"unknown role {value!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
