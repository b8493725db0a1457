"""The campaign page, its live fragment (polled by dashboard.js while the campaign runs) and the
actions its buttons post; a refused action shows the page again with the reason."""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from temporalio.service import RPCError

from whatsapp_campaigns.api.dependencies import get_db, get_settings
from whatsapp_campaigns.dashboard import views
from whatsapp_campaigns.dashboard.auth import (
    DashboardSession,
    check_csrf,
)
from whatsapp_campaigns.dashboard.editor import editor_page
from whatsapp_campaigns.dashboard.pages import (
    OptionalText,
    PageNotFound,
    SessionDep,
    campaigns_client,
    find_audience,
    find_sender,
    owned_campaign,
    redirect,
    render,
    status_code_for,
    temporal_unreachable,
)
from whatsapp_campaigns.domain.models import (
    Progress,
)
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.domain.transitions import CampaignAction, allowed_actions
from whatsapp_campaigns.starter.errors import CampaignNotFound, CampaignRefused
from whatsapp_campaigns.store import campaigns, catalog, listing
from whatsapp_campaigns.store.errors import (
    ActionRefused,
    InsufficientCredits,
    InvalidInput,
    NotFound,
)
from whatsapp_campaigns.store.progress import progress_from_store

log = logging.getLogger(__name__)

LIVE_PROGRESS_TIMEOUT = 3.0  # seconds to wait for the workflow's progress query

router = APIRouter(prefix="/dashboard", include_in_schema=False)


async def _campaign_context(
    request: Request, session: DashboardSession, campaign_id: str
) -> dict[str, Any]:
    db = get_db(request)
    settings = get_settings(request)
    campaign = await owned_campaign(db, campaign_id, session)
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
    sender = await find_sender(db, campaign.sender_phone_number_id)
    template = await asyncio.to_thread(
        catalog.get_template, db, campaign.account_id, campaign.template_name, campaign.language
    )
    audience = await find_audience(db, campaign.audience_id)
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
        client = await campaigns_client(request)
        return await asyncio.wait_for(client.progress(campaign_id), LIVE_PROGRESS_TIMEOUT)
    except Exception as error:  # an enrichment only: the store's view is shown anyway
        log.debug("progress query for campaign %s failed: %s", campaign_id, error)
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
    await owned_campaign(db, campaign_id, session)
    try:
        chosen = CampaignAction(action)
    except ValueError as error:
        raise PageNotFound(f"no action {action!r}") from error
    to_editor = return_to == "editor"
    here = f"/dashboard/campaigns/{campaign_id}" + ("/edit" if to_editor else "")
    by = session.actor
    reason = (reason or "").strip()[:500] or None
    try:
        client = await campaigns_client(request)
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
    except (RPCError, RuntimeError) as error:
        if not temporal_unreachable(error):
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
    code = status_code or (status_code_for(error) if error else 409)
    if to_editor:
        return await editor_page(request, session, campaign_id, error=message, status_code=code)
    return await _campaign_page(request, session, campaign_id, error=message, status_code=code)
