"""The chaos suite's short version (bench/chaos.py runs the long one): a 400-recipient campaign
on the real multi-process stack (Temporal dev server on a file store, two `campaigns worker`
processes, `campaigns api`, `campaigns sandbox` over HTTP; PostgreSQL when
CAMPAIGNS_TEST_POSTGRES_URL is set, else SQLite) while every fault of the schedule is played
on it. The promise: no message lost, nobody messaged twice, no message left unsettled, the
campaign completed."""

import pytest

from tests.conftest import POSTGRES_URL
from whatsapp_campaigns.chaos.faults import DEFAULT_SCHEDULE, FaultTimings
from whatsapp_campaigns.chaos.figures import Figures, table
from whatsapp_campaigns.chaos.run import ChaosOptions, run_chaos

pytestmark = pytest.mark.e2e

RECIPIENTS = 400
RATE = 10.0  # messages/s: about 40 s of sending, so that every fault lands mid-campaign


@pytest.fixture(scope="module")
async def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    """One short chaos run for the module (it takes a minute or two)."""
    options = ChaosOptions(
        work_dir=tmp_path_factory.mktemp("chaos"),
        recipients=RECIPIENTS,
        rate=RATE,
        postgres_url=POSTGRES_URL,
        # Short windows; a quarter of the answers lost, so that some surely are.
        timings=FaultTimings(window=4.0, error_burst=2.0, temporal_down=1.0, lost_answers=0.25),
        deadline=150.0,
    )
    return await run_chaos(options)


async def test_every_fault_was_played_while_the_campaign_was_sending(figures: Figures) -> None:
    played = [row.label for row in figures.rows[1:]]
    assert len(played) == len(DEFAULT_SCHEDULE), table(figures)
    assert figures.sandbox_faults["lost_answers"] > 0, table(figures)
    assert figures.sandbox_faults["error_burst_refusals"] > 0, table(figures)


async def test_the_campaign_completes_despite_the_faults(figures: Figures) -> None:
    assert figures.campaign_status == "completed", table(figures)


async def test_no_message_is_lost(figures: Figures) -> None:
    assert figures.total.lost == 0, table(figures)


async def test_nobody_is_messaged_twice(figures: Figures) -> None:
    assert figures.total.twice == 0, table(figures)


async def test_every_message_ends_in_a_final_status(figures: Figures) -> None:
    assert figures.total.not_final == 0, table(figures)
    assert figures.no_delivery_status == 0, table(figures)  # every webhook got through
