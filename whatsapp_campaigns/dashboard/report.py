"""The report page (every message, a page at a time, filtered by status) and its CSV download."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from whatsapp_campaigns.api.dependencies import get_db
from whatsapp_campaigns.api.routes_campaigns import report_csv_chunks
from whatsapp_campaigns.dashboard.pages import (
    SessionDep,
    owned_campaign,
    render,
)
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store import reports
from whatsapp_campaigns.store.progress import progress_from_store

REPORT_PAGE_ROWS = 100

router = APIRouter(prefix="/dashboard", include_in_schema=False)


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
    campaign = await owned_campaign(db, campaign_id, session)
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
    await owned_campaign(db, campaign_id, session)
    return StreamingResponse(
        report_csv_chunks(db, campaign_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )
