"""The bare Temporal fan-out that the campaign is measured against: the campaign's design with
nothing of ours in it. One regular activity per message (a 20 ms no-op "send") on a
rate-limited task queue, a bounded window refilled in batches (when half of it has completed,
as CampaignDispatch does), continue-as-new every `per_run` messages; no store, no paging
activity, no status bookkeeping.

Imported by the worker process (which registers them) and by the driver (which starts
`BareFanout` by name). No code runs at import: the workflow sandbox re-imports this module.
"""

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@dataclass
class FanoutInput:
    total: int
    task_queue: str  # where the sends go (rate-limited like a sender's queue)
    window: int = 500
    per_run: int = 1000
    done: int = 0  # messages sent by earlier runs


@activity.defn(name="noop_send")
async def noop_send(message_id: int) -> int:
    await asyncio.sleep(NOOP_SEND_SECONDS)
    return message_id


NOOP_SEND_SECONDS = 0.02


@workflow.defn(name="BareFanout")
class BareFanout:
    def __init__(self) -> None:
        self._pending = 0

    @workflow.run
    async def run(self, input: FanoutInput) -> int:
        next_id = input.done
        end = min(input.total, input.done + input.per_run)
        while next_id < end:
            if self._pending >= input.window:
                await workflow.wait_condition(lambda: self._pending <= input.window // 2)
                continue
            self._start(next_id, input.task_queue)
            next_id += 1
        await workflow.wait_condition(lambda: self._pending == 0)
        if end < input.total:
            workflow.continue_as_new(dataclasses.replace(input, done=end))
        return end

    def _start(self, message_id: int, task_queue: str) -> None:
        handle = workflow.start_activity(
            noop_send,
            message_id,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=90),
            heartbeat_timeout=timedelta(seconds=20),
            retry_policy=RetryPolicy(maximum_attempts=10),
        )
        self._pending += 1
        handle.add_done_callback(self._done)

    def _done(self, _: object) -> None:
        self._pending -= 1
