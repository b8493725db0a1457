"""The send workers of one process: one Temporal worker per sender number that has work, kept
in step with the store while the process runs (SPEC §11).

Every `refresh` seconds the store is read again: each registered number's rate is set on the
Temporal server for its send task queue (`QueueRates`: the server holds it across every worker
process, a change applies without a restart), and a number gets a worker while a campaign that
may still send uses it (`queued`, `sending`, `paused`) and loses it when none does; a campaign
that starts sending in this process wakes the loop (`wake`) so that its number is served at
once. So a worker
polls as many queues as there are numbers in use, whatever the count of registered numbers, and
a number added a moment ago is served at the next re-read. A worker also asks for the rate
when it starts polling (`max_task_queue_activities_per_second`, which the server applies until
its own configured rate exists), so a queue is paced even while Temporal refuses the
configuration call (the time-skipping test server does not implement it).
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
from whatsapp_campaigns.workers.queue_rates import QueueRates
from whatsapp_campaigns.workflows.task_queues import send_task_queue

log = logging.getLogger(__name__)

# Sends in flight per sender and worker; the server's task-queue rate limit paces them.
MAX_CONCURRENT_SENDS = 500


@dataclass
class _Running:
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
        numbers_in_use: Callable[[], set[str]] | None = None,
        rates: QueueRates | None = None,
    ) -> None:
        """`list_senders`: the registered numbers; `numbers_in_use`: those that have work
        (None: all of them); both read in a thread. `refresh`: seconds between two reads,
        None to read once. `rates`: sets each number's rate on the server."""
        self._client = client
        self._task_queue = task_queue
        self._sending = sending
        self._list_senders = list_senders
        self._numbers_in_use = numbers_in_use
        self._refresh = refresh
        self._queue_rates = rates or QueueRates(client)
        self._running: dict[str, _Running] = {}
        self._rates: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._woken = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changing = asyncio.Lock()  # one sync (or the shutdown) at a time

    @property
    def rates(self) -> dict[str, int]:
        """The numbers served now, with the rate the server holds them to."""
        return {number: self._rates[number] for number in self._running}

    async def run(self) -> None:
        """Serve the numbers until `shutdown`; a failed re-read is logged and retried."""
        self._loop = asyncio.get_running_loop()
        await self.sync()
        while self._refresh is not None and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping_or_woken(), self._refresh)
            self._woken.clear()
            if self._stopping.is_set():
                break
            try:
                await self.sync()
            except Exception:  # the store may be restarting: keep the workers, try again
                log.exception("sender numbers not re-read; keeping the current send workers")

    def wake(self) -> None:
        """Re-read the numbers now rather than at the next refresh: a campaign of this process
        has just started sending (its number may need a worker). Safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._woken.set)

    async def _stopping_or_woken(self) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, self._woken)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def sync(self) -> None:
        """Set the rates, then start or stop workers so that they match the numbers in use."""
        registered = {s.phone_number_id: s.rate_per_second for s in await self._senders()}
        in_use = (
            set(registered)
            if self._numbers_in_use is None
            else await asyncio.to_thread(self._numbers_in_use)
        )
        await self._queue_rates.apply(
            {self._queue(number): rate for number, rate in registered.items()}
        )
        wanted = {number for number in registered if number in in_use}
        async with self._changing:
            if self._stopping.is_set():  # shut down while the store was read
                return
            for number in [n for n in self._running if n not in wanted]:
                await self._stop(number, "not in use" if number in registered else "removed")
            self._rates = registered
            for number in wanted:
                if number not in self._running:
                    self._start(number)

    async def shutdown(self) -> None:
        """Graceful: stop polling, let running sends finish."""
        self._stopping.set()
        async with self._changing:
            for number in list(self._running):
                await self._stop(number, "shutting down")

    async def _senders(self) -> Sequence[Sender]:
        return await asyncio.to_thread(self._list_senders)

    def _queue(self, number: str) -> str:
        return send_task_queue(self._task_queue, number)

    def _start(self, number: str) -> None:
        worker = Worker(
            self._client,
            task_queue=self._queue(number),
            activities=[self._sending.send_message],
            max_concurrent_activities=MAX_CONCURRENT_SENDS,
            max_task_queue_activities_per_second=self._queue_rates.server_rate(self._rates[number]),
        )
        task = asyncio.create_task(worker.run(), name=f"send-worker-{number}")
        self._running[number] = _Running(worker=worker, task=task)
        log.info("send worker for %s (%d msg/s held by the server)", number, self._rates[number])

    async def _stop(self, number: str, why: str) -> None:
        running = self._running.pop(number)
        log.info("send worker for %s stopping (%s)", number, why)
        await running.worker.shutdown()  # running sends finish first
        with contextlib.suppress(Exception):  # its failure was logged by the worker
            await running.task
