"""The campaign list: the account's campaigns with filters, search, sort, pages and rates."""

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from whatsapp_campaigns.api.dependencies import get_db
from whatsapp_campaigns.dashboard import views
from whatsapp_campaigns.dashboard.pages import (
    SessionDep,
    int_param,
    render,
)
from whatsapp_campaigns.domain.progress import percent_complete
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.domain.transitions import CampaignAction, allowed_actions
from whatsapp_campaigns.store import catalog, listing

router = APIRouter(prefix="/dashboard", include_in_schema=False)


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
    per_page = int_param(query.get("per_page"), 50)
    per_page = per_page if per_page in views.PAGE_SIZES else 50
    page = max(1, int_param(query.get("page"), 1))
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
