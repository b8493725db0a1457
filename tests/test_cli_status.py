"""`campaigns status` and `campaigns watch` as an operator reads them: a finished campaign is
read from the store (Temporal may be down), and "throttled until" says which day and zone."""

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from tests.cli_helpers import free_port, invoke, ok_json, one_line_error
from tests.store_helpers import seed_account, seed_audience, seed_campaign, seed_messages
from whatsapp_campaigns.cli.campaigns import render_progress
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.progress_view import breakdown
from whatsapp_campaigns.store.db import Database

# 09:14:03 UTC on 30 November, given in another zone: shown converted, with its zone.
THROTTLED_UNTIL = datetime(2026, 11, 30, 10, 14, 3, tzinfo=timezone(timedelta(hours=1)))


def _without_temporal(db: Database) -> dict[str, str]:
    """The store, and a Temporal address where nothing listens."""
    return {
        "CAMPAIGNS_DATABASE_URL": db.url,
        "CAMPAIGNS_PROVIDER": "sandbox",
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }


def _campaign(db: Database, status: CampaignStatus, sent: int) -> str:
    seed_account(db)
    audience_id = seed_audience(db, phones=[f"+1415555{n:04d}" for n in range(sent)])
    campaign_id = seed_campaign(db, status=status, audience_id=audience_id)
    seed_messages(db, campaign_id, audience_id, status=MessageStatus.SENT)
    return campaign_id


def _text(progress: Progress) -> str:
    console = Console(record=True, width=200)
    console.print(render_progress(progress))
    return console.export_text()


def test_status_of_a_finished_campaign_is_read_from_the_store_without_temporal(
    db: Database,
) -> None:
    campaign_id = _campaign(db, CampaignStatus.COMPLETED, sent=3)

    shown = ok_json(invoke(["status", campaign_id, "--json"], _without_temporal(db)))

    assert (shown["status"], shown["total"], shown["counts"]) == ("completed", 3, {"sent": 3})


def test_status_of_a_finished_campaign_prints_its_table_without_temporal(db: Database) -> None:
    campaign_id = _campaign(db, CampaignStatus.CANCELLED, sent=2)

    result = invoke(["status", campaign_id], _without_temporal(db))

    assert result.exit_code == 0, result.output
    assert campaign_id in result.stdout and "cancelled" in result.stdout
    assert "100.0% of 2" in result.stdout


def test_status_of_a_running_campaign_without_temporal_says_temporal_is_unreachable(
    db: Database,
) -> None:
    campaign_id = _campaign(db, CampaignStatus.SENDING, sent=1)

    line = one_line_error(invoke(["status", campaign_id], _without_temporal(db)))

    assert "cannot reach Temporal" in line


@pytest.mark.parametrize("shown", [_text, breakdown], ids=["status-table", "watch-bar"])
def test_throttled_until_shows_the_date_and_the_time_zone(
    shown: Callable[[Progress], str],
) -> None:
    progress = Progress(
        campaign_id="c1",
        status=CampaignStatus.SENDING,
        total=10,
        throttled_until=THROTTLED_UNTIL,
    )
    assert "2026-11-30 09:14:03 UTC" in shown(progress)


def test_a_progress_without_throttling_shows_no_throttled_line() -> None:
    progress = Progress(campaign_id="c1", status=CampaignStatus.SENDING, total=1)
    assert "throttled" not in _text(progress) + breakdown(progress)
