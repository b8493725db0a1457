"""Recorded campaign histories must replay against today's workflow code.

A change that would make a running campaign fail on replay (non-determinism) fails here. The
histories under tests/histories/ were recorded by the time-skipping specs with
`CAMPAIGNS_RECORD_HISTORIES=1 pytest tests/test_campaign_workflow.py` (a partitioned campaign
and one of its partitions: tests/test_partitioned_sending.py); re-record them only
together with a versioning plan (workflow.patched) for campaigns already running.
"""

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from whatsapp_campaigns.workflows.campaign import CampaignWorkflow
from whatsapp_campaigns.workflows.send_partition import SendPartitionWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 5, (
        "record them: CAMPAIGNS_RECORD_HISTORIES=1 pytest tests/test_campaign_workflow.py"
    )


def recorded_workflow_id(path: Path) -> str:
    """The id the history was recorded under where the code depends on it (a partitioned
    campaign names its partitions after itself), else any."""
    history = WorkflowHistory.from_json("any", path.read_text())
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child = event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            return child.rsplit("/partition-", 1)[0]
    return f"campaign-{path.stem}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_campaign_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(recorded_workflow_id(path), path.read_text())
    replayer = Replayer(
        workflows=[CampaignWorkflow, SendPartitionWorkflow], data_converter=pydantic_data_converter
    )

    await replayer.replay_workflow(history)
