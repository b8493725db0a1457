"""A campaign's progress read from the store: the same `Progress` the workflow's `progress`
query answers, for campaigns that have no running workflow (drafts, or when Temporal is out of
reach) and for pages that list many campaigns at once; and the store's live message counts
laid over a running workflow's answer (the workflow re-reads them only when it wakes, which a
throttled or paused campaign seldom does)."""

from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.progress import percent_complete
from whatsapp_campaigns.store import campaigns, catalog, messages
from whatsapp_campaigns.store.db import Database


def progress_from_store(db: Database, campaign_id: str) -> Progress:
    campaign = campaigns.get_campaign(db, campaign_id)
    counts = messages.count_by_status(db, campaign_id)
    total = sum(counts.values())
    sender = catalog.get_sender(db, campaign.sender_phone_number_id)
    return Progress(
        campaign_id=campaign.id,
        status=campaign.status,
        total=total,
        counts=counts,
        percent_complete=percent_complete(total, counts),
        throttled_until=sender.throttled_until if campaign.status.value == "sending" else None,
        status_reason=campaign.status_reason,
        timeline=campaigns.get_timeline(db, campaign_id),
        errors=messages.error_summary(db, campaign_id),
    )


def with_live_counts(db: Database, progress: Progress) -> Progress:
    """`progress` (a running workflow's answer) with the message counts, percentage and errors
    as the store has them now: one grouped, indexed query and one for the errors. Before the
    workflow has created the messages, its own answer stands."""
    counts = messages.count_by_status(db, progress.campaign_id)
    total = sum(counts.values())
    if total == 0:
        return progress
    return progress.model_copy(
        update={
            "total": total,
            "counts": counts,
            "percent_complete": percent_complete(total, counts),
            "errors": messages.error_summary(db, progress.campaign_id),
        }
    )
