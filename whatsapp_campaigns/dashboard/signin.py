"""Signing in to and out of the dashboard: the session cookie that every other page requires."""

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from whatsapp_campaigns.api.auth import (
    Principal,
    identify,
    is_open,
    open_principal,
    throttle_keys,
)
from whatsapp_campaigns.api.dependencies import get_db, get_settings
from whatsapp_campaigns.api.throttle import FailedAuthThrottle
from whatsapp_campaigns.dashboard.auth import (
    COOKIE_PATH,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    check_csrf,
    check_origin,
    new_session_cookie,
    read_session,
    safe_next,
)
from whatsapp_campaigns.dashboard.pages import (
    OptionalText,
    SessionDep,
    redirect,
    render,
    signer,
)
from whatsapp_campaigns.domain.tenancy import Role

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("")
async def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    settings = get_settings(request)
    if await asyncio.to_thread(read_session, request) is not None:
        return redirect(request, target)
    if await asyncio.to_thread(is_open, settings, get_db(request)):
        # Open like the API (dev stack): a session without a key, for the CSRF token.
        response = redirect(request, target)
        _set_session(request, response, principal=open_principal(settings), account="", user="")
        return response
    return render(request, "login.html", {"next": target}, session=None)


@router.post("/login")
async def login(
    request: Request,
    api_key: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    account: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/dashboard/",
) -> Response:
    check_origin(request)
    settings = get_settings(request)
    db = get_db(request)
    throttle: FailedAuthThrottle = request.app.state.auth_throttle
    target = safe_next(next)
    key = api_key.strip()
    account = account.strip()[:64]
    context = {"next": target, "user": user, "account": account}
    counted = throttle_keys(request, key)
    retry_after = throttle.retry_after(counted)
    if retry_after is not None:
        log.warning("dashboard sign-in throttled from %s", _client(request))
        context["error"] = f"Too many failed sign-ins: try again in {retry_after} s."
        throttled = render(request, "login.html", context, session=None, status_code=429)
        throttled.headers["Retry-After"] = str(retry_after)
        return throttled
    principal: Principal | None
    if await asyncio.to_thread(is_open, settings, db):
        principal = open_principal(settings)
    else:
        principal = await asyncio.to_thread(identify, settings, db, key) if key else None
    if principal is None:
        throttle.record_failure(counted)
        log.warning("dashboard sign-in refused from %s: unknown API key", _client(request))
        context["error"] = "Unknown or revoked API key."
        return render(request, "login.html", context, session=None, status_code=401)
    if account and account != principal.account and principal.role is not Role.ADMIN:
        context["error"] = f"This key acts on account {principal.account} only."
        return render(request, "login.html", context, session=None, status_code=403)
    response = redirect(request, target)
    _set_session(request, response, principal=principal, account=account, user=user.strip()[:100])
    return response


@router.post("/logout")
async def logout(
    request: Request, session: SessionDep, csrf_token: OptionalText = None
) -> Response:
    check_csrf(request, session, csrf_token)
    response = redirect(request, "/dashboard/login", notice="Signed out.")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _set_session(
    request: Request, response: Response, *, principal: Principal, account: str, user: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new_session_cookie(signer(request), principal=principal, account=account, user=user),
        max_age=SESSION_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
