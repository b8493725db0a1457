"""How `CampaignsClient` handles the server's refusals of an operator update: transient ones
are retried (with one update id, so the workflow applies the command once), final ones are
raised at once. The Temporal side is scripted: the server's refusals cannot be provoked on
demand, and each of them is a documented string and status code."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from tests.store_helpers import seed_account, seed_campaign
from whatsapp_campaigns.domain.models import Progress
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter import client as starter
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.starter.errors import CampaignRefused, CampaignUnavailable
from whatsapp_campaigns.store.db import Database

TASK_FAILED = RPCError(
    "Unable to perform workflow execution update due to Workflow Task in failed state.",
    RPCStatusCode.FAILED_PRECONDITION,
    b"",
)
CLOSING = RPCError("workflow is closing", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
BUSY = RPCError("namespace rate limit exceeded", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
UNREACHABLE = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
COMPLETED = RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
UPDATE_LIMIT = RPCError(
    "limit on number of total updates has been reached", RPCStatusCode.FAILED_PRECONDITION, b""
)
DENIED = RPCError("request unauthorized", RPCStatusCode.PERMISSION_DENIED, b"")


@dataclass
class _Description:
    status: WorkflowExecutionStatus


@dataclass
class ScriptedHandle:
    """Refuses the first updates with `refusals`, then answers with the progress."""

    refusals: Sequence[Exception]
    status: WorkflowExecutionStatus = WorkflowExecutionStatus.RUNNING
    update_ids: list[str | None] = field(default_factory=list)

    async def execute_update(
        self, name: str, payload: Any, *, id: str | None = None, result_type: Any = None
    ) -> Progress:
        self.update_ids.append(id)
        if len(self.update_ids) <= len(self.refusals):
            raise self.refusals[len(self.update_ids) - 1]
        return Progress(campaign_id="c", status=CampaignStatus.PAUSED, total=1)

    async def describe(self) -> _Description:
        return _Description(self.status)


@dataclass
class ScriptedTemporal:
    handle: ScriptedHandle

    def get_workflow_handle(self, workflow_id: str) -> ScriptedHandle:
        return self.handle


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starter, "UPDATE_RETRY_DELAY", 0.001)
    monkeypatch.setattr(starter, "UPDATE_RETRY_DELAY_MAX", 0.001)


@pytest.fixture
def campaign_id(db: Database) -> str:
    seed_account(db)
    return seed_campaign(db, status=CampaignStatus.SENDING, send_at=datetime.now(UTC))


def _client(db: Database, handle: ScriptedHandle) -> CampaignsClient:
    return CampaignsClient(ScriptedTemporal(handle), db, Settings())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "refusal",
    [TASK_FAILED, CLOSING, BUSY, UNREACHABLE, COMPLETED],
    ids=["workflow-task-failed", "closing", "busy", "unreachable", "run-continued-as-new"],
)
async def test_a_transient_refusal_is_retried_until_the_workflow_takes_the_update(
    db: Database, campaign_id: str, refusal: RPCError
) -> None:
    handle = ScriptedHandle(refusals=[refusal, refusal])

    progress = await _client(db, handle).pause(campaign_id, by="ops")

    assert progress.status is CampaignStatus.PAUSED
    assert len(handle.update_ids) == 3


async def test_every_retry_of_an_update_carries_the_same_update_id(
    db: Database, campaign_id: str
) -> None:
    handle = ScriptedHandle(refusals=[TASK_FAILED, CLOSING])
    await _client(db, handle).pause(campaign_id)
    assert len(set(handle.update_ids)) == 1 and handle.update_ids[0]


@pytest.mark.parametrize(
    "refusal", [UPDATE_LIMIT, DENIED], ids=["update-limit", "permission-denied"]
)
async def test_a_final_refusal_is_raised_after_one_try(
    db: Database, campaign_id: str, refusal: RPCError
) -> None:
    handle = ScriptedHandle(refusals=[refusal])
    with pytest.raises(RPCError) as raised:
        await _client(db, handle).pause(campaign_id)
    assert raised.value is refusal
    assert len(handle.update_ids) == 1


async def test_an_update_to_a_workflow_that_ended_says_the_campaign_is_not_running(
    db: Database, campaign_id: str
) -> None:
    handle = ScriptedHandle(refusals=[COMPLETED], status=WorkflowExecutionStatus.COMPLETED)
    with pytest.raises(CampaignRefused, match="is not running"):
        await _client(db, handle).pause(campaign_id)
    assert len(handle.update_ids) == 1


async def test_a_refusal_that_lasts_past_the_retry_window_says_nothing_changed(
    db: Database, campaign_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(starter, "UPDATE_RETRY_FOR", 0.05)
    handle = ScriptedHandle(refusals=[TASK_FAILED] * 10_000)
    with pytest.raises(CampaignUnavailable, match="Workflow Task in failed state") as raised:
        await _client(db, handle).cancel(campaign_id)
    assert "nothing was changed" in str(raised.value)
    assert 1 < len(handle.update_ids) < 10_000
