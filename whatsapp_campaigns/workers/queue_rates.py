"""Each sender number's rate, held by the Temporal server on the number's send task queue
(SPEC §4 rule 5, §11): set with UpdateTaskQueueConfig (the queue's rate limit), which applies
to every worker polling the queue, in every process, without restarting any of them.

`QueueRates.apply` is called on every re-read of the numbers (SendWorkers' loop, every
CAMPAIGNS_SENDER_REFRESH_SECONDS): a rate not yet applied, or changed since, is set; a call that
fails (Temporal unreachable) is logged and tried again on the next re-read, so a change is never
lost and holds within two re-reads. Every worker process applies the same rates from the same
store, so the calls are idempotent.

The server paces a queue with a GCRA limiter whose burst is one second of its rate, fixed in
the server (Temporal 1.32 `service/matching/ratelimit_manager.go`, `defaultBurstDuration`): a
queue that was idle may get about twice its rate in its first calendar second. The send
activity trims that burst (it calls WhatsApp only within a second of the number that has room:
store/send_slots.py); this rate keeps the tasks from piling up in the workers. `factor` sets
the server's rate as a fraction of the number's rate (1.0 by default, measured in
bench/number_rates.py, chosen in docs/engine.md).
"""

import asyncio
import logging
from collections.abc import Mapping

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client

log = logging.getLogger(__name__)

IDENTITY = "campaigns-worker (sender rates)"
# UpdateTaskQueueConfig calls in flight at once when many numbers are new (a worker's start).
SET_AT_ONCE = 16


class QueueRates:
    def __init__(self, client: Client, *, factor: float = 1.0) -> None:
        if not 0 < factor <= 1:
            raise ValueError(f"the server rate factor must be in (0, 1], not {factor}")
        self._client = client
        self._factor = factor
        self._applied: dict[str, float] = {}  # queue -> server rate set by this process

    def applied(self, queue: str) -> bool:
        return queue in self._applied

    def server_rate(self, rate: int) -> float:
        """The queue rate the server holds for a number of `rate` messages/s."""
        return rate * self._factor

    async def apply(self, rates: Mapping[str, int]) -> None:
        """Set each queue's rate (queue -> the number's messages/s) where it is not set yet or
        changed, up to SET_AT_ONCE calls at a time (one after the other, 1,000 registered
        numbers took 108 s at a worker's start: bench/RESULTS.md); failures are logged and
        left for the next call."""
        wanted = {queue: self.server_rate(rate) for queue, rate in rates.items()}
        due = [(q, rps) for q, rps in wanted.items() if self._applied.get(q) != rps]
        turns = asyncio.Semaphore(SET_AT_ONCE)

        async def set_one(queue: str, rps: float) -> None:
            async with turns:
                try:
                    await self._set(queue, rps)
                except Exception as error:  # Temporal restarting or unreachable: next time
                    log.warning(
                        "rate of %s not set (%s); trying again on the next re-read", queue, error
                    )
                    return
            self._applied[queue] = rps
            log.info("task queue %s held at %g msg/s by the Temporal server", queue, rps)

        await asyncio.gather(*(set_one(queue, rps) for queue, rps in due))

    async def _set(self, queue: str, rps: float) -> None:
        request = UpdateTaskQueueConfigRequest(
            namespace=self._client.namespace,
            identity=IDENTITY,
            task_queue=queue,
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
        update = request.update_queue_rate_limit
        update.rate_limit.CopyFrom(RateLimit(requests_per_second=rps))
        update.reason = "sender number rate (campaigns)"
        await self._client.workflow_service.update_task_queue_config(request)
