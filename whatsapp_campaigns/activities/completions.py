"""The completions of one campaign's sends, returned together: fewer workflow tasks.

Each completed send wakes its workflow: the Temporal server schedules a workflow task for it
unless one is scheduled and not started yet, and a task started carries only the completions
that came before it. A campaign's sends reach a worker in runs (a refill of its window, queued
together on its number) and finish one grouped write after another (grouped_writes.py), so the
sooner a worker starts each workflow task, the fewer completions each carries: when the send
path's writes got faster, a campaign took 0.065 workflow tasks per message instead of 0.045,
3.23 history events per message instead of 3.17 (bench/RESULTS.md, "The accepted ids and the
slots of a group in one statement each"). So a send that finished waits while other sends of
its workflow are still under way in this worker process, at most HOLD_SECONDS after the first
of them began to wait, and they all return together. Only the return waits: the message's
outcome is in the store before, and a pause or cancel never waits for it.
"""

import asyncio
import collections
from collections.abc import Awaitable
from typing import TypeVar

from temporalio import activity

# How long a finished send may wait for the other sends of its workflow: a few of the grouped
# writes' gathers (40 ms), a small part of what the campaign's window holds in flight.
HOLD_SECONDS = 0.25

_T = TypeVar("_T")


class CompletionBatches:
    """One worker process's sends, by workflow: how many are under way, and the batch of
    finished ones waiting to return together."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS) -> None:
        self._hold_seconds = hold_seconds
        self._under_way: collections.Counter[str] = collections.Counter()
        self._batches: dict[str, asyncio.Future[None]] = {}

    async def together(self, send: Awaitable[_T]) -> _T:
        """Run the current activity's `send`; once it returned, return with the other
        finished sends of its workflow (a send that raises is not held: a failed attempt
        does not wake the workflow unless it is the last)."""
        info = activity.info()
        workflow_id = info.workflow_id
        if workflow_id is None or info.is_local:  # a local activity answers in the task itself
            return await send
        self._under_way[workflow_id] += 1
        try:
            result = await send
        finally:
            self._under_way[workflow_id] -= 1
            if not self._under_way[workflow_id]:
                del self._under_way[workflow_id]
                self._release(workflow_id)
        if workflow_id in self._under_way:
            await asyncio.shield(self._batch(workflow_id))
        return result

    def _batch(self, workflow_id: str) -> "asyncio.Future[None]":
        batch = self._batches.get(workflow_id)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batches[workflow_id] = loop.create_future()
            loop.call_later(self._hold_seconds, self._release, workflow_id, batch)
        return batch

    def _release(self, workflow_id: str, batch: "asyncio.Future[None] | None" = None) -> None:
        """Let the waiting batch of `workflow_id` return (only `batch`, if given: a timer
        of a batch released earlier must not release the next one)."""
        current = self._batches.get(workflow_id)
        if current is None or (batch is not None and current is not batch):
            return
        del self._batches[workflow_id]
        current.set_result(None)
