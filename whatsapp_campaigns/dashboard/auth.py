"""Dashboard sessions on top of the REST API's keys, and CSRF protection.

A person signs in once with an API key (`campaigns keys create`, or a bootstrap key of
`CAMPAIGNS_API_KEYS`; no key anywhere: the dashboard is open, like the API, and a session is
opened without asking). The key decides the account and the role, as on the REST API: a
viewer sees no actions and every POST of theirs answers 403; an admin may name the account
to act on. The session is a signed cookie (HMAC-SHA256 with `CAMPAIGNS_DASHBOARD_SECRET`, or
a random per-process secret) holding the key's id, never the key: every request re-checks
it, so revoking a key (or removing a bootstrap key from the settings) ends its sessions. The
cookie is HttpOnly, SameSite=Lax and limited to /dashboard.

Every state-changing request is a POST that must carry the session's CSRF token (a hidden
form field, derived from the session's random nonce) and, when the browser sends one, an
Origin (or Referer) of this very host.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

from whatsapp_campaigns.api.auth import Principal, still_valid
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store.db import Database

SESSION_COOKIE = "campaigns_session"
FLASH_COOKIE = "campaigns_flash"
COOKIE_PATH = "/dashboard"
SESSION_MAX_AGE = 12 * 3600  # seconds
FLASH_MAX_AGE = 60


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, fetches answer 401."""


class CsrfFailed(Exception):
    """A POST without this session's token or from another origin: answered 403."""


class ReadOnlySession(CsrfFailed):
    """A viewer's key tried to change something: answered 403 like a CSRF failure."""


@dataclass(frozen=True)
class DashboardSession:
    account: str
    user: str
    nonce: str
    issued_at: int
    csrf_token: str
    open_mode: bool  # no API key configured: nobody had to sign in
    role: Role = Role.ADMIN

    @property
    def can_write(self) -> bool:
        return self.role.can_write

    @property
    def actor(self) -> str:
        """Who acts, as the campaign's timeline records it."""
        return self.user or "dashboard"


class Signer:
    """Signs small JSON payloads for cookies (HMAC-SHA256, URL-safe base64)."""

    def __init__(self, secret: str) -> None:
        self._key = (secret or secrets.token_hex(32)).encode()

    def sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body.decode()}.{self._mac(body)}"

    def load(self, value: str | None) -> dict[str, Any] | None:
        if not value or "." not in value:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body.encode())):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    def derive(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()


def new_session_cookie(signer: Signer, *, principal: Principal, account: str, user: str) -> str:
    payload = {
        "k": principal.key_id,  # the key's id (or a bootstrap key's fingerprint), not the key
        "a": account,
        "u": user,
        "n": secrets.token_hex(16),
        "t": int(time.time()),
    }
    return signer.sign(payload)


def read_session(request: Request) -> DashboardSession | None:
    """The request's valid session, or None (absent, forged, expired or its key revoked)."""
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    signer: Signer = request.app.state.dashboard_signer
    payload = signer.load(request.cookies.get(SESSION_COOKIE))
    if payload is None:
        return None
    try:
        key_id = str(payload["k"])
        account, user, nonce = str(payload["a"]), str(payload["u"]), str(payload["n"])
        issued_at = int(payload["t"])
    except (KeyError, TypeError, ValueError):
        return None
    if time.time() - issued_at > SESSION_MAX_AGE:
        return None
    principal = still_valid(settings, db, key_id)
    if principal is None:
        return None
    return DashboardSession(
        # Only an admin acts on another account than its key's.
        account=account if account and principal.role is Role.ADMIN else principal.account,
        user=user,
        nonce=nonce,
        issued_at=issued_at,
        csrf_token=signer.derive("csrf", nonce)[:40],
        open_mode=principal.key_id == "open",
        role=principal.role,
    )


async def require_session(request: Request) -> DashboardSession:
    session = await asyncio.to_thread(read_session, request)  # re-checks the key in the store
    if session is None:
        raise LoginRequired()
    return session


async def require_writer(request: Request) -> DashboardSession:
    """A session whose key may change things (not a viewer's)."""
    session = await require_session(request)
    if not session.can_write:
        raise ReadOnlySession("this API key is a viewer's: it may only read")
    return session


def check_csrf(request: Request, session: DashboardSession, token: str | None) -> None:
    """Refuse a state-changing request that is not from one of this session's own forms."""
    if not token or not hmac.compare_digest(token, session.csrf_token):
        raise CsrfFailed("the form is out of date or not from this dashboard: reload the page")
    check_origin(request)


def check_origin(request: Request) -> None:
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None or source == "null":
        return  # old browsers and privacy settings send neither; the token still holds
    if urlsplit(source).netloc != request.url.netloc:
        raise CsrfFailed("cross-site request refused")


def safe_next(target: str | None) -> str:
    """A post-login destination inside the dashboard (never another site)."""
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return "/dashboard/"
