"""Signing in to and out of the dashboard: the session cookie that every other page requires."""

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from whatsapp_campaigns.api.auth import is_known_key
from whatsapp_campaigns.api.dependencies import get_settings
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

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("")
async def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    target = safe_next(next)
    settings = get_settings(request)
    if read_session(request) is not None:
        return redirect(request, target)
    if not settings.api_keys:
        # Open like the API (dev stack): a session without a key, for the CSRF token.
        response = redirect(request, target)
        _set_session(request, response, api_key="", account="", user="")
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
    target = safe_next(next)
    key = api_key.strip()
    if settings.api_keys and not (key and is_known_key(key, settings.api_keys)):
        client = request.client.host if request.client else "?"
        log.warning("dashboard sign-in refused from %s: unknown API key", client)
        context = {"next": target, "error": "Unknown API key.", "user": user, "account": account}
        return render(request, "login.html", context, session=None, status_code=401)
    response = redirect(request, target)
    _set_session(
        request,
        response,
        api_key=key if settings.api_keys else "",
        account=account.strip()[:100],
        user=user.strip()[:100],
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, session: SessionDep, csrf_token: OptionalText = None
) -> Response:
    check_csrf(request, session, csrf_token)
    response = redirect(request, "/dashboard/login", notice="Signed out.")
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def _set_session(
    request: Request, response: Response, *, api_key: str, account: str, user: str
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new_session_cookie(signer(request), api_key=api_key, account=account, user=user),
        max_age=SESSION_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
