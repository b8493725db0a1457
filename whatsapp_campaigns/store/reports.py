"""The campaign report (SPEC §4 rule 11): one row per message with its status, error and
timestamps, streamed so that a million-message campaign never sits in memory.

Personal data is kept to the minimum: the phone number, not the recipient's variables.
"""

import csv
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TextIO

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.models import CampaignRow, MessageRow


class ReportRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    message_id: int
    phone_e164: str
    status: MessageStatus
    attempts: int
    error_class: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    provider_message_id: str | None = None
    queued_at: datetime | None = None
    sending_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    responded_at: datetime | None = None
    failed_at: datetime | None = None
    reply_payload: str | None = None  # the quick-reply button the recipient tapped (SPEC §10)


REPORT_COLUMNS = tuple(ReportRow.model_fields)
_MESSAGE_COLUMNS = [
    MessageRow.id.label("message_id"),
    *(getattr(MessageRow, name) for name in REPORT_COLUMNS if name != "message_id"),
]


def iter_report_rows(db: Database, campaign_id: str, page_size: int = 5000) -> Iterator[ReportRow]:
    """Every message of the campaign in id order, one page (one short transaction) at a time."""
    with db.session() as session:
        if session.get(CampaignRow, campaign_id) is None:
            raise NotFound(f"campaign {campaign_id} not found")
    after_id = 0
    while True:
        with db.session() as session:
            page = session.execute(
                select(*_MESSAGE_COLUMNS)
                .where(MessageRow.campaign_id == campaign_id, MessageRow.id > after_id)
                .order_by(MessageRow.id)
                .limit(page_size)
            ).all()
        for row in page:
            yield ReportRow.model_validate(row)
        if len(page) < page_size:
            return
        after_id = page[-1].message_id


def report_page(
    db: Database,
    campaign_id: str,
    *,
    statuses: Sequence[MessageStatus] | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[ReportRow]:
    """Up to `limit` report rows with a message id above `after_id` (keyset paging, cheap at
    any depth), optionally only messages in `statuses`: the dashboard's report view."""
    conditions = [MessageRow.campaign_id == campaign_id, MessageRow.id > after_id]
    if statuses:
        conditions.append(MessageRow.status.in_([MessageStatus(s).value for s in statuses]))
    with db.session() as session:
        if session.get(CampaignRow, campaign_id) is None:
            raise NotFound(f"campaign {campaign_id} not found")
        rows = session.execute(
            select(*_MESSAGE_COLUMNS).where(*conditions).order_by(MessageRow.id).limit(limit)
        ).all()
    return [ReportRow.model_validate(row) for row in rows]


def write_report_csv(db: Database, campaign_id: str, out: TextIO) -> int:
    """Write the report as CSV (header first, ISO 8601 UTC timestamps); returns the rows."""
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    count = 0
    for row in iter_report_rows(db, campaign_id):
        writer.writerow(_csv_value(value) for value in row.model_dump().values())
        count += 1
    return count


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value
