"""The faults a chaos run plays on the stack, by name. Each is an async function that returns
once the fault is over (a process back up, a fault window closed); blocking process work runs
in a thread so the harness keeps watching meanwhile."""

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from whatsapp_campaigns.chaos.stack import ChaosStack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultTimings:
    """How long the faults last (shorter in the test's short version)."""

    window: float = 15.0  # seconds a sandbox fault stays switched on
    error_burst: float = 5.0  # seconds of 503s
    temporal_down: float = 3.0  # seconds between the Temporal kill and its restart
    lost_answers: float = 0.05  # fraction of accepted sends whose answer is lost


FaultAction = Callable[[ChaosStack, FaultTimings], Awaitable[str]]


async def kill_a_worker(stack: ChaosStack, timings: FaultTimings) -> str:
    """SIGKILL the first worker mid-send, then start it again."""
    worker = stack.workers[0]
    await asyncio.to_thread(worker.restart, signal.SIGKILL)
    return f"{worker.name} SIGKILLed and restarted"


async def kill_every_worker(stack: ChaosStack, timings: FaultTimings) -> str:
    """SIGKILL every worker at once (nothing sends), then start them again."""
    for worker in stack.workers:
        await asyncio.to_thread(worker.kill, signal.SIGKILL)
    for worker in stack.workers:
        await asyncio.to_thread(worker.start)
    return f"{len(stack.workers)} workers SIGKILLed and restarted"


async def restart_temporal(stack: ChaosStack, timings: FaultTimings) -> str:
    """SIGKILL the Temporal server; start it again on the same file store a moment later."""
    assert stack.temporal is not None
    await asyncio.to_thread(stack.temporal.restart, signal.SIGKILL, timings.temporal_down)
    return f"Temporal SIGKILLed, restarted after {timings.temporal_down:g} s"


async def terminate_store_connections(stack: ChaosStack, timings: FaultTimings) -> str:
    """pg_terminate_backend on every store connection of the stack (PostgreSQL only)."""
    if not stack.uses_postgres:
        return "skipped (SQLite store)"
    ended = await asyncio.to_thread(stack.terminate_store_connections)
    return f"{ended} PostgreSQL connections terminated"


async def restart_api(stack: ChaosStack, timings: FaultTimings) -> str:
    """SIGKILL the API while the sandbox posts webhooks to it; start it again."""
    assert stack.api is not None
    await asyncio.to_thread(stack.api.restart, signal.SIGKILL)
    return "API SIGKILLed and restarted"


async def error_burst(stack: ChaosStack, timings: FaultTimings) -> str:
    """WhatsApp refuses every send with 503 for a few seconds; again (up to four bursts) while
    no send was refused, since sends may be held back for a moment and a burst that refuses
    nothing tests nothing."""
    before = (await stack.sandbox_stats())["faults"]["error_burst_refusals"]
    bursts = 0
    while bursts < 4:
        await stack.sandbox_error_burst(timings.error_burst)
        await asyncio.sleep(timings.error_burst)
        bursts += 1
        if (await stack.sandbox_stats())["faults"]["error_burst_refusals"] > before:
            break
    return f"{bursts} bursts of {timings.error_burst:g} s of 503s"


async def lost_answers(stack: ChaosStack, timings: FaultTimings) -> str:
    """Some accepted sends answered by a gateway's 502 (accepted, the answer lost). The window
    stays open (up to four times as long) until one answer was lost: sends may be held back
    for a while (retry backoff after the 503 burst), and a window with no send tests nothing."""
    before = (await stack.sandbox_stats())["faults"]["lost_answers"]
    await stack.set_sandbox_faults(lost_answers=timings.lost_answers)
    started = time.monotonic()
    await asyncio.sleep(timings.window)
    while time.monotonic() - started < 4 * timings.window:
        if (await stack.sandbox_stats())["faults"]["lost_answers"] > before:
            break
        await asyncio.sleep(0.5)
    await stack.set_sandbox_faults()
    open_for = time.monotonic() - started
    return f"{timings.lost_answers:.0%} of answers lost for {open_for:.0f} s"


async def webhook_faults(stack: ChaosStack, timings: FaultTimings) -> str:
    """Webhooks duplicated, reordered, dropped then retried (10 % each), delayed up to 2 s."""
    await stack.set_sandbox_faults(
        duplicate_webhooks=0.1,
        reorder_webhooks=0.1,
        drop_webhooks=0.1,
        webhook_delay_max=2.0,
        webhook_retry_after=5.0,
    )
    await asyncio.sleep(timings.window)
    await stack.set_sandbox_faults()
    return f"webhooks duplicated/reordered/dropped (10 % each), delayed ≤ 2 s, {timings.window:g} s"


FAULTS: dict[str, tuple[str, FaultAction]] = {
    "worker-kill": ("worker SIGKILL", kill_a_worker),
    "temporal-restart": ("Temporal SIGKILL + restart", restart_temporal),
    "pg-terminate": ("PostgreSQL connections terminated", terminate_store_connections),
    "api-restart": ("API restart while webhooks flow", restart_api),
    "error-burst": ("WhatsApp 503 burst", error_burst),
    "lost-answers": ("answers lost after accept", lost_answers),
    "webhook-faults": ("webhooks dup/reordered/delayed/dropped", webhook_faults),
    "all-workers-kill": ("every worker SIGKILLed", kill_every_worker),
}
DEFAULT_SCHEDULE = (
    "worker-kill",
    "temporal-restart",
    "pg-terminate",
    "api-restart",
    "error-burst",
    "lost-answers",
    "webhook-faults",
    "all-workers-kill",
)
