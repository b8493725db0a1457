"""Who is calling (SPEC §9): `Authorization: Bearer <API key>` decides the principal — its
account and its role.

- Keys from `campaigns keys create` are bound to an account and a role (`admin`, `operator`,
  `viewer`); the store keeps a digest of each, compared in constant time.
- Keys in `CAMPAIGNS_API_KEYS` are bootstrap `admin` keys of the default account.
- With neither (the dev stack), the API is open and every caller is an admin.

An `admin` acts on the account `X-Account` names (its own by default); an `operator` acts on
its own account only, a `viewer` only reads it. Failed authentications are throttled per
client address and per key id (`FailedAuthThrottle`): 429 with `Retry-After`.

/healthz, /metrics, /docs, /openapi.json and /webhooks/* (signed by Meta, checked there) need
no key.
"""

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from whatsapp_campaigns.api.throttle import FailedAuthThrottle
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import api_keys
from whatsapp_campaigns.store.db import Database

log = logging.getLogger(__name__)

# auto_error=False: we answer 401 ourselves (FastAPI's own answer is a 403 without the
# WWW-Authenticate header); declaring the scheme still puts "Authorize" on /docs.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `campaigns keys create` (or CAMPAIGNS_API_KEYS).",
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller: which key (its id, never its secret), its home account and its role."""

    key_id: str
    account: str
    role: Role


def open_principal(settings: Settings) -> Principal:
    return Principal(key_id="open", account=settings.default_account, role=Role.ADMIN)


def is_open(settings: Settings, db: Database) -> bool:
    """No key configured anywhere: the dev stack's open mode."""
    return not settings.api_keys and not api_keys.has_live_keys(db)


def identify(settings: Settings, db: Database, key: str) -> Principal | None:
    """The principal a key stands for, or None (unknown, wrong or revoked)."""
    bootstrap = _bootstrap_key_id(key, settings.api_keys)
    if bootstrap is not None:
        return Principal(key_id=bootstrap, account=settings.default_account, role=Role.ADMIN)
    stored = api_keys.authenticate(db, key)
    if stored is None:
        return None
    return Principal(key_id=stored.id, account=stored.account_id, role=stored.role)


def still_valid(settings: Settings, db: Database, key_id: str) -> Principal | None:
    """The principal of a key id from an earlier sign-in (a dashboard session), if the key is
    still good: a revoked key, or a bootstrap key taken out of the settings, ends it."""
    if key_id == "open":
        return open_principal(settings) if is_open(settings, db) else None
    if key_id.startswith("bootstrap-"):
        known = {_fingerprint(key) for key in settings.api_keys}
        if key_id.removeprefix("bootstrap-") not in known:
            return None
        return Principal(key_id=key_id, account=settings.default_account, role=Role.ADMIN)
    try:
        stored = api_keys.get_key(db, key_id)
    except LookupError:
        return None
    if stored.revoked_at is not None:
        return None
    return Principal(key_id=stored.id, account=stored.account_id, role=stored.role)


def throttle_keys(request: Request, key: str | None) -> list[str]:
    """What failed attempts are counted against: the client address, and the key id."""
    keys = [f"address:{request.client.host if request.client else '?'}"]
    key_id = api_keys.key_id_of(key) if key else None
    if key_id is not None:
        keys.append(f"key:{key_id}")
    return keys


async def require_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    throttle: FailedAuthThrottle = request.app.state.auth_throttle
    key = credentials.credentials if credentials is not None else None
    counted = throttle_keys(request, key)
    retry_after = throttle.retry_after(counted)
    if retry_after is not None:
        _refuse_throttled(request, retry_after)
    if credentials is None or credentials.scheme.lower() != "bearer" or not key:
        if await asyncio.to_thread(is_open, settings, db):
            return _check_method(request, open_principal(settings))
        _refuse(request, throttle, counted, "missing bearer API key")
    principal = await asyncio.to_thread(identify, settings, db, key)
    if principal is None:
        _refuse(request, throttle, counted, "unknown or revoked API key")
    return _check_method(request, principal)


def require_admin(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    if principal.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs an admin API key")
    return principal


def acting_account(
    principal: Annotated[Principal, Depends(require_principal)],
    x_account: Annotated[
        str | None,
        Header(description="The account an admin key acts on (default: the key's own)."),
    ] = None,
) -> str:
    """The account the request acts on: the key's own, or for an admin the one `X-Account`
    names. Another account named by an operator's or viewer's key is refused."""
    named = (x_account or "").strip()
    if not named or named == principal.account:
        return principal.account
    if principal.role is Role.ADMIN:
        return named
    raise HTTPException(
        status.HTTP_403_FORBIDDEN, f"this API key acts on account {principal.account} only"
    )


def _check_method(request: Request, principal: Principal) -> Principal:
    if request.method not in _READ_METHODS and not principal.role.can_write:
        log.warning(
            "403 %s %s: viewer key %s may only read",
            request.method,
            request.url.path,
            principal.key_id,
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a viewer API key may only read")
    return principal


def _bootstrap_key_id(candidate: str, keys: list[str]) -> str | None:
    """Constant-time in the candidate's content: every key is compared, no early exit."""
    given = candidate.encode()
    found: str | None = None
    for key in keys:
        if hmac.compare_digest(given, key.encode()):
            found = key
    return f"bootstrap-{_fingerprint(found)}" if found is not None else None


def _fingerprint(key: str) -> str:
    """Names a bootstrap key in logs and sessions without revealing it."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _refuse(
    request: Request, throttle: FailedAuthThrottle, counted: list[str], reason: str
) -> NoReturn:
    throttle.record_failure(counted)
    client = request.client.host if request.client else "?"
    log.warning("401 %s %s from %s: %s", request.method, request.url.path, client, reason)
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=reason,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _refuse_throttled(request: Request, retry_after: int) -> NoReturn:
    client = request.client.host if request.client else "?"
    log.warning(
        "429 %s %s from %s: too many failed authentications, retry in %d s",
        request.method,
        request.url.path,
        client,
        retry_after,
    )
    raise HTTPException(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"too many failed authentications: try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def warn_if_open(settings: Settings) -> None:
    if not settings.api_keys:
        log.warning(
            "CAMPAIGNS_API_KEYS is empty: until an API key is created (`campaigns keys "
            "create`), the REST API accepts every request without a key (fine for the dev "
            "stack, never in production)"
        )


PrincipalDep = Annotated[Principal, Depends(require_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
