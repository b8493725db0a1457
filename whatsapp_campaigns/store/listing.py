"""Campaign lists with delivery rates (the REST API's and the dashboard's campaign list).

A page of campaigns costs two queries whatever its size: the page itself
(`campaigns.list_campaigns`) and one grouped count of the page's messages by campaign and
status, served by the (campaign_id, status, id) index of the messages table.
"""

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from whatsapp_campaigns.domain.models import Campaign
from whatsapp_campaigns.domain.statuses import (
    ACCEPTED_MESSAGE_STATUSES,
    DELIVERED_MESSAGE_STATUSES,
    FAILURE_MESSAGE_STATUSES,
    CampaignStatus,
    MessageStatus,
)
from whatsapp_campaigns.store import campaigns
from whatsapp_campaigns.store.campaigns import CampaignSort
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.models import MessageRow


class DeliveryRates(BaseModel):
    """Shares of all the campaign's messages, in percent (one decimal). `sent` counts every
    message WhatsApp accepted (sent, delivered, read or responded), `delivered` those that
    reached the phone, `failed` the failed, invalid-contact and blocked ones."""

    total: int = 0
    counts: dict[MessageStatus, int] = Field(default_factory=dict)
    sent_percent: float = 0.0
    delivered_percent: float = 0.0
    failed_percent: float = 0.0


class CampaignSummary(Campaign):
    """A campaign as a list shows it: the campaign and its delivery rates."""

    rates: DeliveryRates


def delivery_rates(counts: Mapping[MessageStatus, int]) -> DeliveryRates:
    total = sum(counts.values())

    def percent(statuses: frozenset[MessageStatus]) -> float:
        part = sum(n for status, n in counts.items() if status in statuses)
        return round(100.0 * part / total, 1) if total else 0.0

    return DeliveryRates(
        total=total,
        counts=dict(counts),
        sent_percent=percent(ACCEPTED_MESSAGE_STATUSES),
        delivered_percent=percent(DELIVERED_MESSAGE_STATUSES),
        failed_percent=percent(FAILURE_MESSAGE_STATUSES),
    )


def message_counts(
    db: Database, campaign_ids: Sequence[str]
) -> dict[str, dict[MessageStatus, int]]:
    """Messages by status of each campaign, in one grouped query; campaigns without messages
    map to {}."""
    result: dict[str, dict[MessageStatus, int]] = {cid: {} for cid in campaign_ids}
    if not campaign_ids:
        return result
    with db.session() as session:
        rows = session.execute(
            select(MessageRow.campaign_id, MessageRow.status, func.count())
            .where(MessageRow.campaign_id.in_(list(campaign_ids)))
            .group_by(MessageRow.campaign_id, MessageRow.status)
        )
        grouped: defaultdict[str, dict[MessageStatus, int]] = defaultdict(dict)
        for campaign_id, status, count in rows:
            grouped[campaign_id][MessageStatus(status)] = int(count)
    result.update(grouped)
    return result


def list_campaign_summaries(
    db: Database,
    account_id: str,
    *,
    statuses: Sequence[CampaignStatus] | None = None,
    sender: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    sort: CampaignSort = "created",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CampaignSummary], int]:
    """One page of `campaigns.list_campaigns` (same filters and order) with delivery rates,
    and the number of campaigns that match in all."""
    page, total = campaigns.list_campaigns(
        db,
        account_id,
        statuses=statuses,
        sender=sender,
        since=since,
        until=until,
        search=search,
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    counts = message_counts(db, [c.id for c in page])
    summaries = [
        CampaignSummary.model_validate({**c.model_dump(), "rates": delivery_rates(counts[c.id])})
        for c in page
    ]
    return summaries, total
