"""One chaos run: the stack up, one campaign launched, the faults played one after another as
the campaign progresses (fault k of n when k/(n+1) of the recipients were sent to), then the
campaign's end awaited, every webhook let through, and the figures computed."""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from whatsapp_campaigns.chaos.faults import DEFAULT_SCHEDULE, FAULTS, FaultTimings
from whatsapp_campaigns.chaos.figures import Figures, PlayedFault, compute
from whatsapp_campaigns.chaos.stack import ChaosStack, StackOptions
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.store.fixtures import SANDBOX_SENDER

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
SETTLE_SECONDS = 180.0  # for the last webhooks once the campaign has ended


@dataclass(frozen=True)
class ChaosOptions:
    work_dir: Path
    recipients: int = 20_000
    workers: int = 2
    rate: float = 80.0
    postgres_url: str | None = None
    faults: Sequence[str] = DEFAULT_SCHEDULE
    timings: FaultTimings = field(default_factory=FaultTimings)
    reconcile_seconds: float = 30.0
    # The campaign must end within this many seconds of its launch (None: from the audience
    # and the rate, with room for the faults).
    deadline: float | None = None

    def campaign_deadline(self) -> float:
        if self.deadline is not None:
            return self.deadline
        return 3 * self.recipients / self.rate + 300 + 60 * len(self.faults)


class ChaosError(Exception):
    """The run could not be carried out (a process did not come up, a bad fault name)."""


async def run_chaos(options: ChaosOptions) -> Figures:
    unknown = [name for name in options.faults if name not in FAULTS]
    if unknown:
        raise ChaosError(f"unknown fault {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    stack = ChaosStack(
        StackOptions(
            work_dir=options.work_dir,
            workers=options.workers,
            rate=options.rate,
            postgres_url=options.postgres_url,
            reconcile_seconds=options.reconcile_seconds,
        )
    )
    try:
        await asyncio.to_thread(stack.start)
        return await _campaign_under_faults(stack, options)
    finally:
        await asyncio.to_thread(stack.stop)


async def _campaign_under_faults(stack: ChaosStack, options: ChaosOptions) -> Figures:
    campaign_id = await asyncio.to_thread(stack.create_campaign, options.recipients)
    launched = time.time()
    await asyncio.to_thread(stack.launch, campaign_id)
    deadline = launched + options.campaign_deadline()
    played: list[PlayedFault] = []
    count = len(options.faults)
    for index, name in enumerate(options.faults, start=1):
        due = options.recipients * index / (count + 1)
        if not await _wait_for_progress(stack, campaign_id, due, deadline):
            log.warning("campaign ended before fault %s", name)
            break
        label, action = FAULTS[name]
        started = time.time()
        log.info("fault %s at %.0f s", name, started - launched)
        detail = await action(stack, options.timings)
        played.append(PlayedFault(name, label, started, time.time(), detail))

    status = await _wait_for_end(stack, campaign_id, deadline)
    finished = time.time()
    await _settle(stack)
    stats = await stack.sandbox_stats(detail=True)
    outcomes = await asyncio.to_thread(stack.outcomes, campaign_id)
    per_second = {
        int(second): count
        for second, count in stats["per_second"].get(SANDBOX_SENDER.phone_number_id, {}).items()
    }
    return compute(
        recipients=options.recipients,
        rate=options.rate,
        launched=launched,
        finished=finished,
        campaign_status=status,
        played=played,
        per_second=per_second,
        accepted_per_recipient=stats["recipients"],
        repeated=stats["repeated"],
        outcomes=outcomes,
        sandbox_faults=stats["faults"],
    )


async def _wait_for_progress(
    stack: ChaosStack, campaign_id: str, accepted: float, deadline: float
) -> bool:
    """Until WhatsApp accepted `accepted` sends (True) or the campaign ended (False)."""
    checked_status = 0.0
    while time.time() < deadline:
        stats = await stack.sandbox_stats()
        if stats["accepted"] >= accepted:
            return True
        if time.monotonic() - checked_status > 2:
            checked_status = time.monotonic()
            status = await asyncio.to_thread(stack.campaign_status, campaign_id)
            if CampaignStatus(status).is_terminal:
                return False
        await asyncio.sleep(POLL_SECONDS)
    return False


async def _wait_for_end(stack: ChaosStack, campaign_id: str, deadline: float) -> str:
    """The campaign's final status, or the status it is stuck in at the deadline."""
    while True:
        status = await asyncio.to_thread(stack.campaign_status, campaign_id)
        if CampaignStatus(status).is_terminal or time.time() > deadline:
            if not CampaignStatus(status).is_terminal:
                log.error("campaign still %s at the deadline", status)
            return status
        await asyncio.sleep(1.0)


async def _settle(stack: ChaosStack) -> None:
    """Until the sandbox posted every webhook it owes and the API applied them (bounded)."""
    give_up = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < give_up:
        stats = await stack.sandbox_stats()
        waiting = await asyncio.to_thread(stack.webhooks_waiting)
        if stats["webhooks_pending"] == 0 and waiting == 0:
            return
        await asyncio.sleep(POLL_SECONDS)
    log.warning("webhooks still owed after %.0f s", SETTLE_SECONDS)
