"""Fault switches of the HTTP sandbox (`campaigns sandbox --error-bursts-every ...`), for the
chaos suite (bench/chaos.py): what Meta's side of a campaign does on a bad day.

- **5xx bursts**: for `error_burst_seconds`, every send is refused with Meta's 503 (code 2,
  "Service temporarily unavailable"), every `error_bursts_every` seconds, or once on request
  (`POST /sandbox/faults/error-burst`). Nothing is accepted meanwhile.
- **Lost answers**: a fraction of the sends the sandbox *accepted* (counted, webhooks planned)
  are answered by a proxy's plain `502 Bad Gateway`: the request went through, its answer
  did not. The sender cannot tell whether WhatsApp took the message.
- **Webhook faults**, each a fraction of the status webhooks: *duplicated* (delivered twice),
  *reordered* (held back so that the message's next status overtakes it), *dropped then
  retried* (the first delivery lost; Meta's retry comes `webhook_retry_after` seconds later);
  and a random extra *delay* of up to `webhook_delay_max` seconds before each one.

`GET /sandbox/stats` counts the accepted sends per recipient and per calendar second, the
faults played, and the webhooks still owed; `PUT /sandbox/faults` changes the switches while
the server runs (the chaos bench plays them one after another).
"""

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, PlainTextResponse, Response

from whatsapp_campaigns.whatsapp.sandbox import errors
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.webhooks import WebhookSink

log = logging.getLogger(__name__)


class FaultSwitches(BaseModel):
    """The switches, as the CLI flags and `PUT /sandbox/faults` take them (0: off)."""

    model_config = {"extra": "forbid"}

    error_bursts_every: float = Field(0.0, ge=0, description="Seconds between 5xx bursts.")
    error_burst_seconds: float = Field(3.0, gt=0, description="Length of one 5xx burst.")
    lost_answers: float = Field(
        0.0, ge=0, le=1, description="Fraction of accepted sends answered 502 (answer lost)."
    )
    duplicate_webhooks: float = Field(0.0, ge=0, le=1, description="Fraction posted twice.")
    reorder_webhooks: float = Field(
        0.0, ge=0, le=1, description="Fraction held back so the next status overtakes them."
    )
    drop_webhooks: float = Field(
        0.0, ge=0, le=1, description="Fraction whose first delivery is lost (Meta retries)."
    )
    webhook_delay_max: float = Field(
        0.0, ge=0, description="Random extra delay before each webhook, up to this many seconds."
    )
    webhook_retry_after: float = Field(
        5.0, ge=0, description="Seconds before Meta's retry of a dropped webhook."
    )


@dataclass
class FaultCounts:
    """What the sandbox played, for the stats."""

    error_burst_refusals: int = 0
    lost_answers: int = 0
    duplicated_webhooks: int = 0
    reordered_webhooks: int = 0
    dropped_webhooks: int = 0
    delayed_webhooks: int = 0


@dataclass
class SandboxFaults:
    """The switches in force, and what they did. Seeded: a run can be replayed."""

    switches: FaultSwitches = field(default_factory=FaultSwitches)
    seed: int = 0
    clock: Any = time.monotonic
    counts: FaultCounts = field(default_factory=FaultCounts)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._started = self.clock()
        self._burst_until = 0.0

    def change(self, switches: FaultSwitches) -> None:
        """New switches from now on; a periodic burst schedule restarts now."""
        self.switches = switches
        self._started = self.clock()

    def start_error_burst(self, seconds: float) -> None:
        """Refuse every send for the next `seconds`."""
        self._burst_until = max(self._burst_until, self.clock() + seconds)

    def in_error_burst(self) -> bool:
        now = self.clock()
        if now < self._burst_until:
            return True
        every = self.switches.error_bursts_every
        return every > 0 and (now - self._started) % every < self.switches.error_burst_seconds

    def draw(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def extra_delay(self) -> float:
        return self._rng.uniform(0, self.switches.webhook_delay_max)

    async def answer_send(
        self, emulator: SandboxEmulator, phone_number_id: str, body: object, token: str | None
    ) -> Response:
        """The send route's answer with the switches applied."""
        if self.in_error_burst():
            self.counts.error_burst_refusals += 1
            refusal = errors.TRANSIENT
            return JSONResponse(refusal.body(), status_code=refusal.http_status)
        answer = await emulator.send(phone_number_id, body, access_token=token)
        if answer.status_code == 200 and self.draw(self.switches.lost_answers):
            self.counts.lost_answers += 1
            return PlainTextResponse("Bad Gateway", status_code=502)
        return JSONResponse(answer.body, status_code=answer.status_code)


class FaultyWebhookSink:
    """Delivers through `inner` with the webhook switches of `faults` applied. Deliveries it
    postpones run in the background and count as owed until they are done."""

    def __init__(self, inner: WebhookSink, faults: SandboxFaults) -> None:
        self.inner = inner
        self.faults = faults
        self._later: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._later)

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        faults, switches = self.faults, self.faults.switches
        if switches.webhook_delay_max > 0:
            faults.counts.delayed_webhooks += 1
            await asyncio.sleep(faults.extra_delay())
        if faults.draw(switches.drop_webhooks):
            faults.counts.dropped_webhooks += 1
            self._deliver_later(body, headers, switches.webhook_retry_after)
            return
        if faults.draw(switches.reorder_webhooks):
            faults.counts.reordered_webhooks += 1
            # Long enough for the message's next status (a webhook delay later) to overtake it.
            self._deliver_later(body, headers, 1.0 + switches.webhook_delay_max)
            return
        await self.inner.deliver(body, headers)
        if faults.draw(switches.duplicate_webhooks):
            faults.counts.duplicated_webhooks += 1
            self._deliver_later(body, headers, 0.5)

    def _deliver_later(self, body: bytes, headers: dict[str, str], seconds: float) -> None:
        async def later() -> None:
            await asyncio.sleep(seconds)
            try:
                await self.inner.deliver(body, headers)
            except Exception:
                log.warning("sandbox webhook delivery failed", exc_info=True)

        task = asyncio.get_running_loop().create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def drain(self) -> None:
        while self._later:
            await asyncio.gather(*list(self._later), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._later):
            task.cancel()
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def sandbox_stats(
    emulator: SandboxEmulator, faults: SandboxFaults | None, *, detail: bool = True
) -> dict[str, Any]:
    """How many sends the sandbox accepted, the faults played and the webhooks still to be
    posted; with `detail`, the accepted sends per sender and calendar second (UTC epoch
    seconds) and per recipient (wa_id digits), and for the recipients messaged more than once
    the time (epoch) of each accepted send. Without, it is cheap enough to poll."""
    sink = emulator.webhook_sink
    postponed = sink.pending if isinstance(sink, FaultyWebhookSink) else 0
    stats: dict[str, Any] = {
        "accepted": len(emulator.accepted_sends),
        "faults": asdict(faults.counts) if faults is not None else {},
        "webhooks_pending": emulator.pending_webhooks + postponed,
    }
    if not detail:
        return stats
    sends = list(emulator.accepted_sends)
    per_second: dict[str, Counter[int]] = {}
    times: dict[str, list[float]] = {}
    for send in sends:
        at = send.at.timestamp()
        per_second.setdefault(send.sender_phone_number_id, Counter())[int(at)] += 1
        times.setdefault(send.to, []).append(at)
    stats["per_second"] = {sender: dict(seconds) for sender, seconds in per_second.items()}
    stats["recipients"] = {to: len(accepted) for to, accepted in times.items()}
    stats["repeated"] = {to: accepted for to, accepted in times.items() if len(accepted) > 1}
    return stats


def fault_routes(emulator: SandboxEmulator, faults: SandboxFaults) -> APIRouter:
    """The control routes of the fault switches, under /sandbox/."""
    router = APIRouter(prefix="/sandbox", tags=["sandbox control"])

    @router.get("/stats")
    async def stats(detail: bool = True) -> dict[str, Any]:
        """Accepted sends (per second and per recipient unless `detail=false`), faults
        played, webhooks still owed."""
        return sandbox_stats(emulator, faults, detail=detail)

    @router.get("/faults")
    async def current() -> FaultSwitches:
        return faults.switches

    @router.put("/faults")
    async def change(switches: FaultSwitches) -> FaultSwitches:
        """Switch faults on or off from now on."""
        faults.change(switches)
        log.info("sandbox faults now %s", switches.model_dump(exclude_defaults=True) or "off")
        return faults.switches

    @router.post("/faults/error-burst")
    async def error_burst(seconds: float = 3.0) -> dict[str, float]:
        """Refuse every send with a 503 for the next `seconds`."""
        faults.start_error_burst(seconds)
        return {"seconds": seconds}

    return router
