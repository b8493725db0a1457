"""What every dashboard page shares: rendering with the security headers and the flash
message, redirects, the signed-in account's campaign (404 otherwise), store lookups, and the
mapping of refused actions to status codes.

Pages read the store directly, as the REST API's reads do; every action goes through the
same `CampaignsClient` as the API and the CLI, so a refused action shows the very reason
`domain.transitions` (or the workflow) gives. Only the actions that `allowed_actions()`
returns for the campaign's status and policy are offered.
"""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from temporalio.service import RPCError

from whatsapp_campaigns.api.dependencies import ClientHolder
from whatsapp_campaigns.dashboard import views
from whatsapp_campaigns.dashboard.auth import (
    COOKIE_PATH,
    FLASH_COOKIE,
    FLASH_MAX_AGE,
    DashboardSession,
    Signer,
    require_session,
    require_writer,
)
from whatsapp_campaigns.domain.models import (
    Audience,
    Campaign,
    Sender,
)
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.templates import template_parts
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import audiences, campaigns, catalog
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import (
    InvalidInput,
    NotFound,
)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# Scripts and styles only from /dashboard/static: an injected <script> could not run anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

SessionDep = Annotated[DashboardSession, Depends(require_session)]
# Pages and forms that change something: a viewer's key is answered 403.
WriterSessionDep = Annotated[DashboardSession, Depends(require_writer)]
OptionalText = Annotated[str | None, Form()]


class PageNotFound(Exception):
    """Answered with the dashboard's own 404 page."""


def build_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every value is HTML-escaped unless a template says otherwise
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = views.local_time
    env.filters["iso"] = views.iso_utc
    env.filters["thousands"] = lambda n: f"{int(n or 0):,}"
    env.globals.update(
        CAMPAIGN_STATUS_HELP=views.CAMPAIGN_STATUS_HELP,
        MESSAGE_STATUS_HELP=views.MESSAGE_STATUS_HELP,
        CampaignStatus=CampaignStatus,
        MessageStatus=MessageStatus,
        ACTION_LABELS=views.ACTION_LABELS,
        SORTS=views.SORTS,
        PAGE_SIZES=views.PAGE_SIZES,
        BUTTON_ICONS=views.BUTTON_ICONS,
        template_parts=template_parts,
    )
    return Jinja2Templates(env=env)


def signer(request: Request) -> Signer:
    value: Signer = request.app.state.dashboard_signer
    return value


async def campaigns_client(request: Request) -> CampaignsClient:
    holder: ClientHolder = request.app.state.campaigns_client
    return await holder.get()


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: DashboardSession | None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page with the security headers, and the flash message left by the last redirect."""
    templates: Jinja2Templates = request.app.state.dashboard_templates
    flash = signer(request).load(request.cookies.get(FLASH_COOKIE))
    response = templates.TemplateResponse(
        request,
        name,
        {"session": session, "flash": flash, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH)
    return response


def redirect(
    request: Request, url: str, *, notice: str | None = None, kind: str = "ok"
) -> RedirectResponse:
    """303 to `url`, with a one-time message shown on the next page."""
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if notice:
        response.set_cookie(
            FLASH_COOKIE,
            signer(request).sign({"text": notice[:500], "kind": kind}),
            max_age=FLASH_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


async def owned_campaign(db: Database, campaign_id: str, session: DashboardSession) -> Campaign:
    try:
        campaign = await asyncio.to_thread(campaigns.get_campaign, db, campaign_id)
    except NotFound as error:
        raise PageNotFound(f"campaign {campaign_id} not found") from error
    if campaign.account_id != session.account:
        raise PageNotFound(f"campaign {campaign_id} not found")
    return campaign


def status_code_for(error: Exception) -> int:
    if isinstance(error, InvalidInput | views.FormError | AudienceImportError | ValidationError):
        return 422
    if isinstance(error.__cause__, ValueError):
        return 422
    return 409


def temporal_unreachable(error: Exception) -> bool:
    if isinstance(error, RPCError):
        return True
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")


def validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{field}: {item.get('msg', 'invalid')}" if field else item["msg"])
    return "; ".join(parts)


async def find_sender(db: Database, phone_number_id: str) -> Sender | None:
    try:
        return await asyncio.to_thread(catalog.get_sender, db, phone_number_id)
    except NotFound:
        return None


async def find_audience(db: Database, audience_id: str | None) -> Audience | None:
    if audience_id is None:
        return None
    try:
        return await asyncio.to_thread(audiences.get_audience, db, audience_id)
    except NotFound:
        return None


def int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default
