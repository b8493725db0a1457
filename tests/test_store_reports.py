"""The campaign report (SPEC §4 rule 11): every message, streamed, as CSV."""

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from tests.store_helpers import seed_account, seed_audience, seed_campaign, seed_messages
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.store import reports
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.models import MessageRow

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


def _campaign_with_messages(db: Database, count: int) -> tuple[str, list[int]]:
    seed_account(db)
    audience_id = seed_audience(db, phones=[f"+1202555{i:04d}" for i in range(count)])
    campaign_id = seed_campaign(db, audience_id=audience_id)
    return campaign_id, seed_messages(db, campaign_id, audience_id)


def test_report_has_one_row_per_message_in_id_order(db: Database) -> None:
    campaign_id, message_ids = _campaign_with_messages(db, 3)
    rows = list(reports.iter_report_rows(db, campaign_id))
    assert [r.message_id for r in rows] == sorted(message_ids)
    assert [r.phone_e164 for r in rows] == ["+12025550000", "+12025550001", "+12025550002"]


def test_report_pages_through_every_message(db: Database) -> None:
    campaign_id, message_ids = _campaign_with_messages(db, 25)
    rows = list(reports.iter_report_rows(db, campaign_id, page_size=10))
    assert [r.message_id for r in rows] == sorted(message_ids)


def test_report_of_a_page_sized_campaign_ends(db: Database) -> None:
    campaign_id, _ = _campaign_with_messages(db, 10)
    assert len(list(reports.iter_report_rows(db, campaign_id, page_size=5))) == 10


def test_report_carries_status_error_and_timestamps(db: Database) -> None:
    campaign_id, (message_id,) = _campaign_with_messages(db, 1)
    with db.session() as session:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(
                status="blocked",
                attempts=2,
                error_class="blocked",
                error_code=131049,
                error_title="Message not delivered to maintain healthy ecosystem engagement",
                failed_at=T0,
            )
        )
    (row,) = reports.iter_report_rows(db, campaign_id)
    assert (row.status, row.attempts, row.error_code) == (MessageStatus.BLOCKED, 2, 131049)
    assert row.failed_at == T0 and row.sent_at is None


def test_report_keeps_personal_data_to_the_phone_number() -> None:
    assert "variables" not in reports.ReportRow.model_fields
    assert "phone_e164" in reports.ReportRow.model_fields


def test_report_of_an_unknown_campaign_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        list(reports.iter_report_rows(db, "nope"))


def test_csv_has_a_header_then_one_line_per_message(db: Database) -> None:
    campaign_id, _ = _campaign_with_messages(db, 3)
    out = io.StringIO()
    assert reports.write_report_csv(db, campaign_id, out) == 3
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == list(reports.ReportRow.model_fields)
    assert len(lines) == 4


def test_csv_writes_iso_8601_timestamps_and_empty_cells_for_none(db: Database) -> None:
    campaign_id, (message_id,) = _campaign_with_messages(db, 1)
    with db.session() as session:
        session.execute(
            update(MessageRow)
            .where(MessageRow.id == message_id)
            .values(status="sent", sent_at=T0, provider_message_id="wamid.1")
        )
    out = io.StringIO()
    reports.write_report_csv(db, campaign_id, out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["sent_at"] == "2030-03-01T09:00:00+00:00"
    assert row["status"] == "sent" and row["provider_message_id"] == "wamid.1"
    assert row["delivered_at"] == "" and row["error_code"] == ""


def test_csv_of_a_campaign_without_messages_is_the_header_only(db: Database) -> None:
    seed_account(db)
    campaign_id = seed_campaign(db)
    out = io.StringIO()
    assert reports.write_report_csv(db, campaign_id, out) == 0
    assert out.getvalue().strip() == ",".join(reports.ReportRow.model_fields)
