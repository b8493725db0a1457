"""The dashboard's pages (SPEC §6 Dashboard): campaign list, campaign page, draft editor,
report view, and the actions, all server-rendered (Jinja2, autoescaped) under /dashboard.

Pages read the store directly, as the REST API's reads do; every action goes through the
same `CampaignsClient` as the API and the CLI, so a refused action shows the very reason
`domain.transitions` (or the workflow) gives. Only the actions that `allowed_actions()`
returns for the campaign's status and policy are offered.
"""

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from temporalio.service import RPCError

from whatsapp_campaigns.api.auth import is_known_key
from whatsapp_campaigns.api.dependencies import ClientHolder, get_db, get_settings
from whatsapp_campaigns.api.routes_campaigns import report_csv_chunks
from whatsapp_campaigns.dashboard import views
from whatsapp_campaigns.dashboard.auth import (
    COOKIE_PATH,
    FLASH_COOKIE,
    FLASH_MAX_AGE,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    DashboardSession,
    Signer,
    check_csrf,
    check_origin,
    new_session_cookie,
    read_session,
    require_session,
    safe_next,
)
from whatsapp_campaigns.domain.models import (
    Audience,
    Campaign,
    CampaignDraft,
    InvalidRow,
    Progress,
    Recipient,
    Sender,
    Template,
)
from whatsapp_campaigns.domain.progress import percent_complete
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.transitions import CampaignAction, allowed_actions
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.starter.errors import (
    CampaignNotFound,
    CampaignRefused,
    CampaignUnavailable,
)
from whatsapp_campaigns.store import audiences, campaigns, catalog, listing, reports
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import (
    ActionRefused,
    InsufficientCredits,
    InvalidInput,
    NotFound,
)
from whatsapp_campaigns.store.progress import progress_from_store
from whatsapp_campaigns.whatsapp.components import render_preview

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# Scripts and styles only from /dashboard/static: an injected <script> could not run anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

INVALID_ROWS_SHOWN = 50
SAMPLE_SIZE = 5
REPORT_PAGE_ROWS = 100
LIVE_PROGRESS_TIMEOUT = 3.0  # seconds to wait for the workflow's progress query

router = APIRouter(prefix="/dashboard", include_in_schema=False)
SessionDep = Annotated[DashboardSession, Depends(require_session)]
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
    )
    return Jinja2Templates(env=env)


# ------------------------------------------------------------------------------ helpers


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.dashboard_signer
    return signer


async def _client(request: Request) -> CampaignsClient:
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
    flash = _signer(request).load(request.cookies.get(FLASH_COOKIE))
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
            _signer(request).sign({"text": notice[:500], "kind": kind}),
            max_age=FLASH_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


async def _owned_campaign(db: Database, campaign_id: str, session: DashboardSession) -> Campaign:
    try:
        campaign = await asyncio.to_thread(campaigns.get_campaign, db, campaign_id)
    except NotFound as error:
        raise PageNotFound(f"campaign {campaign_id} not found") from error
    if campaign.account_id != session.account:
        raise PageNotFound(f"campaign {campaign_id} not found")
    return campaign


def _status_code_for(error: Exception) -> int:
    if isinstance(error, InvalidInput | views.FormError | AudienceImportError | ValidationError):
        return 422
    if isinstance(error.__cause__, ValueError):
        return 422
    return 409


def _temporal_unreachable(error: Exception) -> bool:
    if isinstance(error, RPCError):
        return True
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{field}: {item.get('msg', 'invalid')}" if field else item["msg"])
    return "; ".join(parts)


# -------------------------------------------------------------------------- sign in/out


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
        new_session_cookie(_signer(request), api_key=api_key, account=account, user=user),
        max_age=SESSION_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


# ------------------------------------------------------------------------ campaign list


@dataclass(frozen=True)
class ListRow:
    campaign: listing.CampaignSummary
    sender: str
    percent: float
    live: bool
    report: bool


@router.get("/")
async def campaign_list(request: Request, session: SessionDep) -> HTMLResponse:
    """The account's campaigns with filters, search, sort and pages."""
    db = get_db(request)
    query = request.query_params
    valid_statuses = {s.value for s in CampaignStatus}
    statuses = [CampaignStatus(v) for v in query.getlist("status") if v in valid_statuses]
    sort = query.get("sort") if query.get("sort") in views.SORTS else "created"
    order = "asc" if query.get("order") == "asc" else "desc"
    per_page = _int(query.get("per_page"), 50)
    per_page = per_page if per_page in views.PAGE_SIZES else 50
    page = max(1, _int(query.get("page"), 1))
    params: dict[str, Any] = {
        "status": [s.value for s in statuses],
        "sender": query.get("sender") or None,
        "since": query.get("since") or None,
        "until": query.get("until") or None,
        "q": (query.get("q") or "").strip() or None,
        "sort": sort if sort != "created" else None,
        "order": order if order != "desc" else None,
        "per_page": str(per_page) if per_page != 50 else None,
    }
    notes = []
    since = views.parse_day(params["since"])
    until = views.parse_day(params["until"], end=True)
    if (params["since"] and since is None) or (params["until"] and until is None):
        notes.append("A date filter was not a date (YYYY-MM-DD) and is ignored.")
    items, total = await asyncio.to_thread(
        listing.list_campaign_summaries,
        db,
        session.account,
        statuses=statuses or None,
        sender=params["sender"],
        since=since,
        until=until,
        search=params["q"],
        sort=sort,  # type: ignore[arg-type]  # checked against SORTS above
        descending=order == "desc",
        limit=per_page,
        offset=(page - 1) * per_page,
    )
    senders = await asyncio.to_thread(catalog.list_senders, db, session.account)
    numbers = {s.phone_number_id: s.display_number for s in senders}
    now = datetime.now(UTC)
    rows = []
    for item in items:
        actions = allowed_actions(item.status, item.policy, now=now, send_at=item.send_at)
        rows.append(
            ListRow(
                campaign=item,
                sender=numbers.get(item.sender_phone_number_id, item.sender_phone_number_id),
                percent=percent_complete(item.rates.total, item.rates.counts),
                live=item.status in views.RUNNING_STATUSES,
                report=CampaignAction.REPORT in actions,
            )
        )
    pages = max(1, math.ceil(total / per_page))

    def url(**changes: object) -> str:
        return views.list_url(params, **changes)

    def sort_url(key: str) -> str:
        flip = "asc" if sort == key and order == "desc" else None
        return url(sort=None if key == "created" else key, order=flip, page=None)

    context = {
        "rows": rows,
        "total": total,
        "page": page,
        "pages": pages,
        "per_page": per_page,
        "first_index": (page - 1) * per_page + 1 if items else 0,
        "last_index": (page - 1) * per_page + len(items),
        "params": params,
        "statuses": statuses,
        "sort": sort,
        "order": order,
        "senders": senders,
        "url": url,
        "sort_url": sort_url,
        "live": any(r.campaign.status in views.LIVE_STATUSES for r in rows),
        "notes": notes,
        "updated_at": now,
        "fragment_url": url(fragment="1", page=page if page > 1 else None),
    }
    template = "_list_table.html" if query.get("fragment") else "list.html"
    return render(request, template, context, session=session)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


# ------------------------------------------------------------------------ campaign page


async def _campaign_context(
    request: Request, session: DashboardSession, campaign_id: str
) -> dict[str, Any]:
    db = get_db(request)
    settings = get_settings(request)
    campaign = await _owned_campaign(db, campaign_id, session)
    progress = await asyncio.to_thread(progress_from_store, db, campaign_id)
    throttled_until = progress.throttled_until
    if campaign.status in views.RUNNING_STATUSES:
        live = await _live_progress(request, campaign_id)
        if live is not None:
            throttled_until = live.throttled_until
    now = datetime.now(UTC)
    if throttled_until is not None and throttled_until <= now:
        throttled_until = None
    actions = allowed_actions(campaign.status, campaign.policy, now=now, send_at=campaign.send_at)
    sender = await _sender(db, campaign.sender_phone_number_id)
    template = await asyncio.to_thread(
        catalog.get_template, db, campaign.account_id, campaign.template_name, campaign.language
    )
    audience = await _audience(db, campaign.audience_id)
    rates = listing.delivery_rates(progress.counts)
    return {
        "campaign": campaign,
        "progress": progress,
        "rates": rates,
        "breakdown": [(s, progress.counts.get(s, 0)) for s in MessageStatus],
        "throttled_until": throttled_until,
        "actions": actions,
        "signature": ",".join(actions),
        "cancel_note": views.cancel_note(campaign, now),
        "sender": sender,
        "template": template,
        "audience": audience,
        "live": campaign.status in views.LIVE_STATUSES,
        "interval": 2000 if campaign.status in views.RUNNING_STATUSES else 5000,
        "temporal_url": (
            views.temporal_workflow_url(
                settings.temporal_ui_url, settings.temporal_namespace, campaign.id
            )
            if campaign.status is not CampaignStatus.DRAFT
            else None
        ),
        "timezones": views.timezone_names(),
        "prefill": views.send_at_fields(campaign, now),
    }


async def _live_progress(request: Request, campaign_id: str) -> Progress | None:
    """The workflow's own view (it knows the throttle); None when Temporal does not answer."""
    try:
        client = await _client(request)
        return await asyncio.wait_for(client.progress(campaign_id), LIVE_PROGRESS_TIMEOUT)
    except Exception as error:  # an enrichment only: the store's view is shown anyway
        log.debug("progress query for campaign %s failed: %s", campaign_id, error)
        return None


async def _sender(db: Database, phone_number_id: str) -> Sender | None:
    try:
        return await asyncio.to_thread(catalog.get_sender, db, phone_number_id)
    except NotFound:
        return None


async def _audience(db: Database, audience_id: str | None) -> Audience | None:
    if audience_id is None:
        return None
    try:
        return await asyncio.to_thread(audiences.get_audience, db, audience_id)
    except NotFound:
        return None


async def _campaign_page(
    request: Request,
    session: DashboardSession,
    campaign_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = await _campaign_context(request, session, campaign_id)
    context["error"] = error
    return render(request, "campaign.html", context, session=session, status_code=status_code)


@router.get("/campaigns/new")
async def new_campaign(request: Request, session: SessionDep) -> HTMLResponse:
    return await _editor_page(request, session, None)


@router.get("/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: str, session: SessionDep) -> HTMLResponse:
    return await _campaign_page(request, session, campaign_id)


@router.get("/campaigns/{campaign_id}/live")
async def campaign_live(request: Request, campaign_id: str, session: SessionDep) -> HTMLResponse:
    """The changing parts of the campaign page, fetched by dashboard.js while it runs."""
    context = await _campaign_context(request, session, campaign_id)
    return render(request, "_campaign_live.html", context, session=session)


# ----------------------------------------------------------------------------- actions


@router.post("/campaigns/{campaign_id}/actions/{action}")
async def campaign_action(
    request: Request,
    campaign_id: str,
    action: str,
    session: SessionDep,
    csrf_token: OptionalText = None,
    reason: OptionalText = None,
    send_date: OptionalText = None,
    send_time: OptionalText = None,
    timezone: OptionalText = None,
    to: OptionalText = None,
    return_to: OptionalText = None,
) -> Response:
    check_csrf(request, session, csrf_token)
    db = get_db(request)
    await _owned_campaign(db, campaign_id, session)
    try:
        chosen = CampaignAction(action)
    except ValueError as error:
        raise PageNotFound(f"no action {action!r}") from error
    to_editor = return_to == "editor"
    here = f"/dashboard/campaigns/{campaign_id}" + ("/edit" if to_editor else "")
    by = session.actor
    reason = (reason or "").strip()[:500] or None
    try:
        client = await _client(request)
        match chosen:
            case CampaignAction.SCHEDULE:
                send_at = views.parse_send_at(send_date, send_time, timezone)
                tz = (timezone or "UTC").strip()
                await client.schedule(campaign_id, send_at, timezone=tz, by=by)
                notice = f"Scheduled for {views.local_time(send_at, timezone, seconds=True)}."
                here = f"/dashboard/campaigns/{campaign_id}"
            case CampaignAction.LAUNCH:
                await client.launch(campaign_id, by=by)
                notice = "Launched: sending starts now."
                here = f"/dashboard/campaigns/{campaign_id}"
            case CampaignAction.RESCHEDULE:
                send_at = views.parse_send_at(send_date, send_time, timezone)
                await client.reschedule(campaign_id, send_at, by=by)
                notice = f"Rescheduled to {views.local_time(send_at, timezone, seconds=True)}."
            case CampaignAction.PAUSE:
                await client.pause(campaign_id, reason=reason, by=by)
                notice = "Paused: no new message is sent until you resume."
            case CampaignAction.RESUME:
                await client.resume(campaign_id, by=by)
                notice = "Resumed."
            case CampaignAction.CANCEL:
                await client.cancel(campaign_id, reason=reason, by=by)
                notice = "Cancelled."
            case CampaignAction.RETRY_FAILED:
                await client.retry_failed(campaign_id, by=by)
                notice = "Retrying the failed messages."
            case CampaignAction.DUPLICATE:
                copy = await client.duplicate(campaign_id, by=by)
                return redirect(
                    request,
                    f"/dashboard/campaigns/{copy.id}/edit",
                    notice=f"Duplicated into a new draft: {copy.name}.",
                )
            case CampaignAction.DELETE:
                await asyncio.to_thread(campaigns.delete_draft, db, campaign_id)
                return redirect(request, "/dashboard/", notice="Draft deleted.")
            case CampaignAction.TEST_SEND:
                if not to or not to.strip():
                    raise views.FormError("enter the phone number to test-send to")
                wamid = await client.test_send(campaign_id, to.strip())
                notice = f"Test message sent to {to.strip()} (WhatsApp id {wamid})."
            case _:
                raise PageNotFound(f"action {chosen.value} has no button here")
    except (
        CampaignRefused,
        ActionRefused,
        InsufficientCredits,
        InvalidInput,
        views.FormError,
        CampaignNotFound,
        NotFound,
    ) as error:
        message = f"{ACTION_VERBS.get(chosen, chosen.value)} refused: {error}"
        return await _action_failed(request, session, campaign_id, message, to_editor, error)
    except CampaignUnavailable as error:
        log.warning("dashboard %s of %s: %s", chosen, campaign_id, error)
        return await _action_failed(request, session, campaign_id, str(error), to_editor, None, 503)
    except (RPCError, RuntimeError) as error:
        if not _temporal_unreachable(error):
            raise
        log.warning("dashboard %s of %s: Temporal unreachable: %s", chosen, campaign_id, error)
        message = "Temporal is unreachable; nothing was changed. Try again in a moment."
        return await _action_failed(request, session, campaign_id, message, to_editor, None, 503)
    return redirect(request, here, notice=notice)


ACTION_VERBS = {a: views.ACTION_LABELS.get(a, a.value) for a in CampaignAction}


async def _action_failed(
    request: Request,
    session: DashboardSession,
    campaign_id: str,
    message: str,
    to_editor: bool,
    error: Exception | None,
    status_code: int | None = None,
) -> HTMLResponse:
    code = status_code or (_status_code_for(error) if error else 409)
    if to_editor:
        return await _editor_page(request, session, campaign_id, error=message, status_code=code)
    return await _campaign_page(request, session, campaign_id, error=message, status_code=code)


# ------------------------------------------------------------------------------ editor


@dataclass
class DraftForm:
    name: str = ""
    template: str = ""  # "<name>:<language>"
    sender: str = ""
    audience_id: str = ""
    timezone: str = ""
    phone_column: str = "phone"
    region: str = ""
    audience_name: str = ""

    @classmethod
    def of(cls, campaign: Campaign) -> "DraftForm":
        return cls(
            name=campaign.name,
            template=f"{campaign.template_name}:{campaign.language}",
            sender=campaign.sender_phone_number_id,
            audience_id=campaign.audience_id or "",
            timezone=campaign.timezone,
        )

    def template_key(self) -> tuple[str, str]:
        name, _, language = self.template.rpartition(":")
        return (name, language) if name else (self.template, "en")


async def _editor_page(
    request: Request,
    session: DashboardSession,
    campaign_id: str | None,
    *,
    form: DraftForm | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    db = get_db(request)
    settings = get_settings(request)
    campaign = await _owned_campaign(db, campaign_id, session) if campaign_id else None
    form = form or (DraftForm.of(campaign) if campaign else DraftForm())
    templates = await asyncio.to_thread(catalog.list_templates, db, session.account)
    senders = await asyncio.to_thread(catalog.list_senders, db, session.account)
    audience_list = await asyncio.to_thread(audiences.list_audiences, db, session.account)
    if not form.template and templates:
        approved = [t for t in templates if t.status.value == "APPROVED"]
        form.template = _key(approved[0] if approved else templates[0])
    if not form.sender and senders:
        form.sender = senders[0].phone_number_id
    selected = next((t for t in templates if _key(t) == form.template), None)
    context: dict[str, Any] = {
        "campaign": campaign,
        "form": form,
        "templates": templates,
        "template_key": _key,
        "selected_template": selected,
        "senders": senders,
        "audiences": audience_list,
        "timezones": views.timezone_names(),
        "default_region": settings.default_region,
        "error": error,
        "actions": [],
    }
    if campaign is not None:
        now = datetime.now(UTC)
        context["actions"] = allowed_actions(
            campaign.status, campaign.policy, now=now, send_at=campaign.send_at
        )
        context["prefill"] = views.send_at_fields(campaign, now)
        context.update(await _audience_context(request, campaign, selected))
    return render(request, "editor.html", context, session=session, status_code=status_code)


def _key(template: Template) -> str:
    return f"{template.name}:{template.language}"


async def _audience_context(
    request: Request, campaign: Campaign, template: Template | None
) -> dict[str, Any]:
    """The audience's import report and a preview for one of its first recipients."""
    db = get_db(request)
    audience = await _audience(db, campaign.audience_id)
    if audience is None:
        return {"audience": None}
    invalid_rows: list[InvalidRow] = await asyncio.to_thread(
        audiences.get_invalid_rows, db, audience.id
    )
    sample: list[Recipient] = await asyncio.to_thread(
        audiences.sample_recipients, db, audience.id, SAMPLE_SIZE
    )
    index = min(max(0, _int(request.query_params.get("sample"), 0)), max(0, len(sample) - 1))
    recipient = sample[index] if sample else None
    preview = missing = None
    if template is not None and recipient is not None:
        preview = render_preview(template, recipient.variables)
        missing = [v for v in template.variables if not recipient.variables.get(v)]
    return {
        "audience": audience,
        "invalid_rows": invalid_rows[:INVALID_ROWS_SHOWN],
        "sample": sample,
        "sample_index": index,
        "recipient": recipient,
        "preview": preview,
        "missing_variables": missing,
    }


def draft_form(
    name: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    audience_id: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    phone_column: Annotated[str, Form()] = "phone",
    region: Annotated[str, Form()] = "",
    audience_name: Annotated[str, Form()] = "",
) -> DraftForm:
    """The draft editor's fields, posted by both "new" and "edit"."""
    return DraftForm(
        name, template, sender, audience_id, timezone, phone_column, region, audience_name
    )


DraftFormDep = Annotated[DraftForm, Depends(draft_form)]


@router.post("/campaigns/new")
async def create_campaign(
    request: Request,
    session: SessionDep,
    form: DraftFormDep,
    csrf_token: OptionalText = None,
    audience_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, session, csrf_token)
    return await _save_draft(request, session, None, form, audience_file)


@router.get("/campaigns/{campaign_id}/edit")
async def edit_campaign_form(request: Request, campaign_id: str, session: SessionDep) -> Response:
    campaign = await _owned_campaign(get_db(request), campaign_id, session)
    now = datetime.now(UTC)
    if CampaignAction.EDIT not in allowed_actions(
        campaign.status, campaign.policy, now=now, send_at=campaign.send_at
    ):
        return redirect(
            request,
            f"/dashboard/campaigns/{campaign_id}",
            notice=f"The campaign is {campaign.status.value}: its content is locked.",
            kind="error",
        )
    return await _editor_page(request, session, campaign_id)


@router.post("/campaigns/{campaign_id}/edit")
async def edit_campaign(
    request: Request,
    campaign_id: str,
    session: SessionDep,
    form: DraftFormDep,
    csrf_token: OptionalText = None,
    audience_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, session, csrf_token)
    await _owned_campaign(get_db(request), campaign_id, session)
    return await _save_draft(request, session, campaign_id, form, audience_file)


async def _save_draft(
    request: Request,
    session: DashboardSession,
    campaign_id: str | None,
    form: DraftForm,
    upload: UploadFile | None,
) -> Response:
    """Import the uploaded CSV (if any), then create or edit the draft with it."""
    db = get_db(request)
    settings = get_settings(request)
    notices = []
    try:
        if upload is not None and upload.filename:
            result = await asyncio.to_thread(
                audiences.import_audience_csv,
                db,
                session.account,
                form.audience_name.strip() or f"{form.name.strip() or 'campaign'} audience",
                upload.file,
                phone_column=form.phone_column.strip() or "phone",
                default_region=form.region.strip().upper() or settings.default_region,
            )
            imported = result.audience
            form.audience_id = imported.id
            notices.append(
                f"Audience imported: {imported.valid:,} valid, {imported.invalid:,} invalid, "
                f"{imported.duplicates:,} duplicates, {imported.suppressed:,} opted out."
            )
        template_name, language = form.template_key()
        policy = None
        if campaign_id is not None:
            policy = (await _owned_campaign(db, campaign_id, session)).policy
        draft = CampaignDraft(
            name=form.name.strip(),
            template_name=template_name,
            language=language or "en",
            sender_phone_number_id=form.sender,
            audience_id=form.audience_id or None,
            timezone=form.timezone.strip() or "UTC",
            **({"policy": policy} if policy is not None else {}),
        )
        client = await _client(request)
        if campaign_id is None:
            saved = await client.create_draft(draft, account_id=session.account, by=session.actor)
        else:
            saved = await client.edit_draft(campaign_id, draft, by=session.actor)
    except ValidationError as error:
        message = f"Not saved: {_validation_message(error)}"
        return await _editor_page(
            request, session, campaign_id, form=form, error=message, status_code=422
        )
    except (AudienceImportError, CampaignRefused, CampaignNotFound, InvalidInput) as error:
        message = f"Not saved: {error}"
        return await _editor_page(
            request, session, campaign_id, form=form, error=message, status_code=422
        )
    notices.insert(0, "Draft saved." if campaign_id is None else "Changes saved.")
    return redirect(request, f"/dashboard/campaigns/{saved.id}/edit", notice=" ".join(notices))


# ------------------------------------------------------------------------------ report


@router.get("/campaigns/{campaign_id}/report")
async def report_page(
    request: Request,
    campaign_id: str,
    session: SessionDep,
    after: int = 0,
    status: str | None = None,
) -> HTMLResponse:
    """Every message with its status, error and timestamps, a page at a time."""
    db = get_db(request)
    campaign = await _owned_campaign(db, campaign_id, session)
    chosen = MessageStatus(status) if status in {s.value for s in MessageStatus} else None
    rows = await asyncio.to_thread(
        reports.report_page,
        db,
        campaign_id,
        statuses=[chosen] if chosen else None,
        after_id=max(0, after),
        limit=REPORT_PAGE_ROWS,
    )
    progress = await asyncio.to_thread(progress_from_store, db, campaign_id)
    context = {
        "campaign": campaign,
        "rows": rows,
        "progress": progress,
        "status_filter": chosen,
        "after": after,
        "next_after": rows[-1].message_id if len(rows) == REPORT_PAGE_ROWS else None,
    }
    return render(request, "report.html", context, session=session)


@router.get("/campaigns/{campaign_id}/report.csv")
async def report_csv(request: Request, campaign_id: str, session: SessionDep) -> StreamingResponse:
    db = get_db(request)
    await _owned_campaign(db, campaign_id, session)
    return StreamingResponse(
        report_csv_chunks(db, campaign_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )
