"""A campaign's finished sends return together (activities/completions.py): a send that finished
waits while other sends of its workflow are under way in the worker, at most the hold, so that
one workflow task carries their completions."""

import asyncio
import dataclasses
import time

import pytest
from temporalio.testing import ActivityEnvironment

from whatsapp_campaigns.activities.completions import CompletionBatches

HOLD = 0.3


class _Send:
    """A send of `workflow_id` that finishes when told to (`finish`), noting when it returned."""

    def __init__(
        self,
        batches: CompletionBatches,
        workflow_id: str | None,
        *,
        local: bool = False,
        fails: bool = False,
    ) -> None:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, workflow_id=workflow_id, is_local=local)
        self.finished = asyncio.Event()
        self.returned_at: float | None = None
        self._fails = fails
        self._batches = batches
        self.task = asyncio.create_task(env.run(self._activity))

    async def _activity(self) -> str:
        result = await self._batches.together(self._body())
        self.returned_at = time.monotonic()
        return result

    async def _body(self) -> str:
        await self.finished.wait()
        if self._fails:
            raise RuntimeError("refused")
        return "sent"

    async def finish(self) -> None:
        self.finished.set()
        await asyncio.sleep(0.02)  # its body returns; it waits for its batch or not


async def test_a_finished_send_waits_while_another_of_its_campaign_is_under_way() -> None:
    batches = CompletionBatches(hold_seconds=10)
    first, second = _Send(batches, "campaign-a"), _Send(batches, "campaign-a")
    await asyncio.sleep(0.01)

    await first.finish()
    assert first.returned_at is None
    await second.finish()

    assert await asyncio.wait_for(asyncio.gather(first.task, second.task), 1) == ["sent", "sent"]
    assert first.returned_at is not None and second.returned_at is not None
    assert abs(first.returned_at - second.returned_at) < 0.01  # together, when the last finished


async def test_a_finished_send_waits_no_longer_than_the_hold() -> None:
    batches = CompletionBatches(hold_seconds=HOLD)
    first, still_sending = _Send(batches, "campaign-a"), _Send(batches, "campaign-a")
    await asyncio.sleep(0.01)
    began = time.monotonic()

    await first.finish()
    await asyncio.wait_for(first.task, 2)

    assert first.returned_at is not None
    assert HOLD - 0.05 <= first.returned_at - began <= HOLD + 0.2
    assert not still_sending.task.done()
    await still_sending.finish()
    await asyncio.wait_for(still_sending.task, 1)  # the last one under way: returns at once


async def test_sends_finished_while_a_batch_waits_return_with_it() -> None:
    batches = CompletionBatches(hold_seconds=HOLD)
    sends = [_Send(batches, "campaign-a") for _ in range(3)]
    await asyncio.sleep(0.01)

    began = time.monotonic()
    await sends[0].finish()
    await asyncio.sleep(HOLD / 2)
    await sends[1].finish()  # joins the batch the first one began
    await asyncio.wait_for(asyncio.gather(sends[0].task, sends[1].task), 2)

    assert sends[0].returned_at is not None and sends[1].returned_at is not None
    assert abs(sends[0].returned_at - sends[1].returned_at) < 0.01
    assert sends[1].returned_at - began < HOLD + 0.1  # with the first's batch, not a hold later
    assert not sends[2].task.done()
    await sends[2].finish()


async def test_another_campaigns_sends_do_not_hold_a_send() -> None:
    batches = CompletionBatches(hold_seconds=10)
    other = _Send(batches, "campaign-b")
    mine = _Send(batches, "campaign-a")
    await asyncio.sleep(0.01)

    await mine.finish()

    assert mine.task.done()
    await other.finish()


async def test_a_send_that_raises_is_not_held() -> None:
    batches = CompletionBatches(hold_seconds=10)
    still_sending = _Send(batches, "campaign-a")
    failing = _Send(batches, "campaign-a", fails=True)
    await asyncio.sleep(0.01)

    await failing.finish()

    assert failing.task.done()
    with pytest.raises(RuntimeError, match="refused"):
        failing.task.result()
    await still_sending.finish()
    assert still_sending.task.done()  # the failed one is no longer under way: nothing to wait for


async def test_a_local_activity_or_a_send_outside_a_workflow_is_not_held() -> None:
    batches = CompletionBatches(hold_seconds=10)
    under_way = _Send(batches, "campaign-a")
    local = _Send(batches, "campaign-a", local=True)
    alone = _Send(batches, None)
    await asyncio.sleep(0.01)

    await local.finish()
    await alone.finish()

    assert local.task.done() and alone.task.done()
    await under_way.finish()
