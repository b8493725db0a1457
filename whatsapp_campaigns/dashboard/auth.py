"""Dashboard sessions on top of the REST API's keys, and CSRF protection.

A person signs in once with an API key from `CAMPAIGNS_API_KEYS` (none configured: the
dashboard is open, like the API, and a session is opened without asking). The session is a
signed cookie (HMAC-SHA256 with `CAMPAIGNS_DASHBOARD_SECRET`, or a random per-process secret)
holding a fingerprint of the key, never the key: removing a key from the settings ends the
sessions opened with it. The cookie is HttpOnly, SameSite=Lax and limited to /dashboard.

Every state-changing request is a POST that must carry the session's CSRF token (a hidden
form field, derived from the session's random nonce) and, when the browser sends one, an
Origin (or Referer) of this very host.
"""

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

from whatsapp_campaigns.api.auth import is_known_key
from whatsapp_campaigns.settings import Settings

SESSION_COOKIE = "campaigns_session"
FLASH_COOKIE = "campaigns_flash"
COOKIE_PATH = "/dashboard"
SESSION_MAX_AGE = 12 * 3600  # seconds
FLASH_MAX_AGE = 60


class LoginRequired(Exception):
    """No valid session: pages redirect to the login form, fetches answer 401."""


class CsrfFailed(Exception):
    """A POST without this session's token or from another origin: answered 403."""


@dataclass(frozen=True)
class DashboardSession:
    account: str
    user: str
    nonce: str
    issued_at: int
    csrf_token: str
    open_mode: bool  # no API key configured: nobody had to sign in

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


def key_fingerprint(signer: Signer, api_key: str) -> str:
    return signer.derive("api-key", api_key)[:32]


def new_session_cookie(signer: Signer, *, api_key: str, account: str, user: str) -> str:
    payload = {
        "k": key_fingerprint(signer, api_key) if api_key else "",
        "a": account,
        "u": user,
        "n": secrets.token_hex(16),
        "t": int(time.time()),
    }
    return signer.sign(payload)


def read_session(request: Request) -> DashboardSession | None:
    """The request's valid session, or None (absent, forged, expired or its key revoked)."""
    settings: Settings = request.app.state.settings
    signer: Signer = request.app.state.dashboard_signer
    payload = signer.load(request.cookies.get(SESSION_COOKIE))
    if payload is None:
        return None
    try:
        fingerprint = str(payload["k"])
        account, user, nonce = str(payload["a"]), str(payload["u"]), str(payload["n"])
        issued_at = int(payload["t"])
    except (KeyError, TypeError, ValueError):
        return None
    if time.time() - issued_at > SESSION_MAX_AGE:
        return None
    if settings.api_keys:
        current = [key_fingerprint(signer, key) for key in settings.api_keys]
        if not fingerprint or not is_known_key(fingerprint, current):
            return None
    return DashboardSession(
        account=account or settings.default_account,
        user=user,
        nonce=nonce,
        issued_at=issued_at,
        csrf_token=signer.derive("csrf", nonce)[:40],
        open_mode=not settings.api_keys,
    )


async def require_session(request: Request) -> DashboardSession:
    session = read_session(request)
    if session is None:
        raise LoginRequired()
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
