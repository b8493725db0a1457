"""`/campaigns`: list, CRUD of drafts, the actions of SPEC §3, progress and the CSV report.

Reads come straight from the store (no Temporal needed); everything that creates or steers a
campaign goes through `CampaignsClient`, which applies the rules of `domain.transitions` and
raises `CampaignRefused` (409) with the rule's reason. A campaign of another account than the
caller's is answered 404, as if it did not exist.
"""

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from whatsapp_campaigns.api.dependencies import AccountDep, ActorDep, ClientDep, DatabaseDep
from whatsapp_campaigns.api.schemas import (
    ERROR_RESPONSES,
    CampaignDetail,
    CampaignPage,
    ReasonRequest,
    RescheduleRequest,
    ScheduleRequest,
    SendTestRequest,
    SendTestResult,
)
from whatsapp_campaigns.domain.models import Campaign, CampaignDraft, Progress
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.transitions import allowed_actions
from whatsapp_campaigns.store import campaigns, listing
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.progress import progress_from_store
from whatsapp_campaigns.store.reports import REPORT_COLUMNS, iter_report_rows

router = APIRouter(prefix="/campaigns", tags=["campaigns"], responses=ERROR_RESPONSES)

# Report rows per chunk written to the response: big enough to keep per-chunk overhead low,
# small enough that memory stays flat for any campaign size.
_REPORT_CHUNK_ROWS = 1_000


async def _owned(db: Database, campaign_id: str, account_id: str) -> Campaign:
    campaign = await asyncio.to_thread(campaigns.get_campaign, db, campaign_id)
    if campaign.account_id != account_id:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


@router.get("", summary="List campaigns", response_model=CampaignPage)
async def list_campaigns(
    db: DatabaseDep,
    account: AccountDep,
    status_: Annotated[
        list[CampaignStatus] | None,
        Query(alias="status", description="Repeat to match any of several statuses."),
    ] = None,
    sender: Annotated[str | None, Query(description="Sender phone number id.")] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Created at or after (ISO 8601 with offset).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Created before (ISO 8601 with offset).")
    ] = None,
    search: Annotated[
        str | None, Query(description="Part of the name (any case), or an exact id.")
    ] = None,
    sort: Literal["created", "scheduled", "name", "status"] = "created",
    descending: bool = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> CampaignPage:
    """One page of the account's campaigns, each with its Sent%, Delivered% and Failed%
    (shares of all its messages), and the total number of matching campaigns."""
    items, total = await asyncio.to_thread(
        listing.list_campaign_summaries,
        db,
        account,
        statuses=status_,
        sender=sender,
        since=since,
        until=until,
        search=search,
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    return CampaignPage(items=items, total=total, limit=limit, offset=offset)


@router.post(
    "", summary="Create a draft", status_code=status.HTTP_201_CREATED, response_model=Campaign
)
async def create_campaign(
    draft: CampaignDraft, client: ClientDep, account: AccountDep, actor: ActorDep
) -> Campaign:
    """Save a new draft. Its sender (and audience, if given) must belong to the account; the
    template is checked when the campaign is scheduled."""
    return await client.create_draft(draft, account_id=account, by=actor)


@router.get("/{campaign_id}", summary="A campaign, its progress and allowed actions")
async def get_campaign(campaign_id: str, db: DatabaseDep, account: AccountDep) -> CampaignDetail:
    """The campaign, its progress as the store has it, and the actions its status and policy
    allow now (what a UI should offer)."""
    campaign = await _owned(db, campaign_id, account)
    progress = await asyncio.to_thread(progress_from_store, db, campaign_id)
    actions = allowed_actions(
        campaign.status, campaign.policy, now=datetime.now(UTC), send_at=campaign.send_at
    )
    return CampaignDetail(campaign=campaign, progress=progress, allowed_actions=actions)


@router.put("/{campaign_id}", summary="Edit a draft")
async def edit_campaign(
    campaign_id: str,
    draft: CampaignDraft,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
    actor: ActorDep,
) -> Campaign:
    """Replace the content of a draft (or of a scheduled campaign: it is read at execution)."""
    await _owned(db, campaign_id, account)
    return await client.edit_draft(campaign_id, draft, by=actor)


@router.delete("/{campaign_id}", summary="Delete a draft", status_code=status.HTTP_204_NO_CONTENT)
async def delete_campaign(campaign_id: str, db: DatabaseDep, account: AccountDep) -> Response:
    """Only drafts can be deleted; anything that was scheduled keeps its history."""
    await _owned(db, campaign_id, account)
    await asyncio.to_thread(campaigns.delete_draft, db, campaign_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{campaign_id}/schedule", summary="Schedule a draft (or send it now)")
async def schedule_campaign(
    campaign_id: str,
    body: ScheduleRequest,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
    actor: ActorDep,
) -> Campaign:
    """Run the preflight (recipients, approved template, variables, sender, credits), then
    start the campaign's workflow, which waits for `send_at` (null: now). Refused with every
    preflight problem at once."""
    await _owned(db, campaign_id, account)
    return await client.schedule(campaign_id, body.send_at, timezone=body.timezone, by=actor)


@router.post("/{campaign_id}/launch", summary="Send a draft now")
async def launch_campaign(
    campaign_id: str, db: DatabaseDep, client: ClientDep, account: AccountDep, actor: ActorDep
) -> Campaign:
    """The same as scheduling with `send_at` null."""
    await _owned(db, campaign_id, account)
    return await client.launch(campaign_id, by=actor)


@router.post("/{campaign_id}/pause", summary="Pause sending")
async def pause_campaign(
    campaign_id: str,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
    actor: ActorDep,
    body: ReasonRequest | None = None,
) -> Progress:
    """No new send starts after the workflow accepts; in-flight sends finish. Answers the
    progress after the change."""
    await _owned(db, campaign_id, account)
    return await client.pause(campaign_id, reason=body.reason if body else None, by=actor)


@router.post("/{campaign_id}/resume", summary="Resume a paused campaign")
async def resume_campaign(
    campaign_id: str, db: DatabaseDep, client: ClientDep, account: AccountDep, actor: ActorDep
) -> Progress:
    """Dispatch continues where it stopped. Answers the progress after the change."""
    await _owned(db, campaign_id, account)
    return await client.resume(campaign_id, by=actor)


@router.post("/{campaign_id}/cancel", summary="Cancel a campaign")
async def cancel_campaign(
    campaign_id: str,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
    actor: ActorDep,
    body: ReasonRequest | None = None,
) -> Progress:
    """Refused for a scheduled campaign within its cancel cut-off (5 minutes before the send
    time by default), and once sending when its policy locks it. Remaining messages become
    `cancelled`; the partial report stays available."""
    await _owned(db, campaign_id, account)
    return await client.cancel(campaign_id, reason=body.reason if body else None, by=actor)


@router.post("/{campaign_id}/reschedule", summary="Move the send time of a scheduled campaign")
async def reschedule_campaign(
    campaign_id: str,
    body: RescheduleRequest,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
    actor: ActorDep,
) -> Progress:
    """Moves the workflow's timer; only while the campaign is scheduled. Answers the progress
    after the change."""
    await _owned(db, campaign_id, account)
    return await client.reschedule(campaign_id, body.send_at, by=actor)


@router.post("/{campaign_id}/retry-failed", summary="Send the failed messages again")
async def retry_failed(
    campaign_id: str, db: DatabaseDep, client: ClientDep, account: AccountDep, actor: ActorDep
) -> Campaign:
    """A new run of a finished campaign over its failed messages that a retry could fix."""
    await _owned(db, campaign_id, account)
    return await client.retry_failed(campaign_id, by=actor)


@router.post(
    "/{campaign_id}/duplicate",
    summary="Copy a campaign into a new draft",
    status_code=status.HTTP_201_CREATED,
)
async def duplicate_campaign(
    campaign_id: str, db: DatabaseDep, client: ClientDep, account: AccountDep, actor: ActorDep
) -> Campaign:
    """Same content, audience and policy; not scheduled. Allowed from any status."""
    await _owned(db, campaign_id, account)
    return await client.duplicate(campaign_id, by=actor)


@router.post("/{campaign_id}/test-send", summary="Send the template to one number now")
async def test_send(
    campaign_id: str,
    body: SendTestRequest,
    db: DatabaseDep,
    client: ClientDep,
    account: AccountDep,
) -> SendTestResult:
    """Outside the campaign (not counted, not charged to it): to check how the message looks
    before scheduling."""
    await _owned(db, campaign_id, account)
    wamid = await client.test_send(campaign_id, body.to, variables=body.variables)
    return SendTestResult(provider_message_id=wamid)


@router.get("/{campaign_id}/progress", summary="Live progress")
async def get_progress(
    campaign_id: str, db: DatabaseDep, client: ClientDep, account: AccountDep
) -> Progress:
    """The workflow's `progress` query while the campaign runs; the store's view for drafts
    and finished campaigns (or when Temporal is out of reach)."""
    campaign = await _owned(db, campaign_id, account)
    if campaign.status is CampaignStatus.DRAFT or campaign.status.is_terminal:
        return await asyncio.to_thread(progress_from_store, db, campaign_id)
    return await client.progress(campaign_id)


@router.get(
    "/{campaign_id}/report.csv",
    summary="Report: one CSV row per message",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def get_report(campaign_id: str, db: DatabaseDep, account: AccountDep) -> StreamingResponse:
    """Every message with its status, error and timestamps (ISO 8601 UTC), streamed page by
    page from the store: memory stays flat for any campaign size."""
    await _owned(db, campaign_id, account)
    return StreamingResponse(
        report_csv_chunks(db, campaign_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


def report_csv_chunks(db: Database, campaign_id: str) -> Iterator[str]:
    """CSV text in chunks; a sync generator, which Starlette runs in its thread pool."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_COLUMNS)
    for rows, row in enumerate(iter_report_rows(db, campaign_id), start=1):
        writer.writerow(_csv_cell(value) for value in row.model_dump().values())
        if rows % _REPORT_CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value
