"""The send workers of one process: one rate-limited Temporal worker per sender number, kept in
step with the store while the process runs.

Every `refresh` seconds the numbers in the store are read again: a number added since
(`senders add`) gets its worker, a removed one loses it, and a number whose rate changed (Meta's
upgrade to 1,000 msg/s, an operator's cap) gets a new worker at the new rate, so no worker has
to be restarted for a number to be served. The rate limit itself is the task queue's
(`max_task_queue_activities_per_second`), held by the Temporal server across every worker
process.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.worker import Worker

from whatsapp_campaigns.activities.sending import SendActivities
from whatsapp_campaigns.domain.models import Sender
from whatsapp_campaigns.workflows.task_queues import send_task_queue

log = logging.getLogger(__name__)

# Sends in flight per sender and worker; the task-queue rate limit paces them.
MAX_CONCURRENT_SENDS = 500


@dataclass
class _Running:
    rate: int
    worker: Worker
    task: "asyncio.Task[None]"


class SendWorkers:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        sending: SendActivities,
        list_senders: Callable[[], Sequence[Sender]],
        *,
        refresh: float | None,
    ) -> None:
        """`list_senders`: the numbers to serve (read in a thread); `refresh`: seconds between
        two reads of it, None to serve the first list only."""
        self._client = client
        self._task_queue = task_queue
        self._sending = sending
        self._list_senders = list_senders
        self._refresh = refresh
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._changing = asyncio.Lock()  # one sync (or the shutdown) at a time

    @property
    def rates(self) -> dict[str, int]:
        """The numbers served now, with the rate of their worker."""
        return {number: running.rate for number, running in self._running.items()}

    async def run(self) -> None:
        """Serve the numbers until `shutdown`; a failed re-read is logged and retried."""
        await self.sync()
        while self._refresh is not None and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._refresh)
            if self._stopping.is_set():
                break
            try:
                await self.sync()
            except Exception:  # the store may be restarting: keep the workers, try again
                log.exception("sender numbers not re-read; keeping the current send workers")

    async def sync(self) -> None:
        """Start, stop or re-rate workers so that they match the store's numbers."""
        wanted = {s.phone_number_id: s.rate_per_second for s in await self._senders()}
        async with self._changing:
            if self._stopping.is_set():  # shut down while the store was read
                return
            for number in [n for n in self._running if wanted.get(n) != self._running[n].rate]:
                await self._stop(number, "removed" if number not in wanted else "rate changed")
            for number, rate in wanted.items():
                if number not in self._running:
                    self._start(number, rate)

    async def shutdown(self) -> None:
        """Graceful: stop polling, let running sends finish."""
        self._stopping.set()
        async with self._changing:
            for number in list(self._running):
                await self._stop(number, "shutting down")

    async def _senders(self) -> Sequence[Sender]:
        return await asyncio.to_thread(self._list_senders)

    def _start(self, number: str, rate: int) -> None:
        worker = Worker(
            self._client,
            task_queue=send_task_queue(self._task_queue, number),
            activities=[self._sending.send_message],
            max_concurrent_activities=MAX_CONCURRENT_SENDS,
            max_task_queue_activities_per_second=float(rate),
        )
        task = asyncio.create_task(worker.run(), name=f"send-worker-{number}")
        self._running[number] = _Running(rate=rate, worker=worker, task=task)
        log.info("send worker for %s at %d msg/s", number, rate)

    async def _stop(self, number: str, why: str) -> None:
        running = self._running.pop(number)
        log.info("send worker for %s stopping (%s)", number, why)
        await running.worker.shutdown()  # running sends finish first
        with contextlib.suppress(Exception):  # its failure was logged by the worker
            await running.task
