"""Recorded campaign histories must replay against today's workflow code.

A change that would make a running campaign fail on replay (non-determinism) fails here. The
histories under tests/histories/ were recorded by the time-skipping specs with
`CAMPAIGNS_RECORD_HISTORIES=1 pytest tests/test_campaign_workflow.py`; re-record them only
together with a versioning plan (workflow.patched) for campaigns already running.
"""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from whatsapp_campaigns.workflows.campaign import CampaignWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 5, (
        "record them: CAMPAIGNS_RECORD_HISTORIES=1 pytest tests/test_campaign_workflow.py"
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_campaign_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(f"campaign-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[CampaignWorkflow], data_converter=pydantic_data_converter)

    await replayer.replay_workflow(history)
