"""The send activity: one attempt at sending one message (SPEC §4 rules 6 and 12).

The Temporal retry policy around it is the per-message retry: this code classifies each
failure and tells Temporal how to retry it (`next_retry_delay`: seconds on throughput limits,
minutes on pair limits, 12 h on messaging limits; `non_retryable` when another attempt would
fail the same way). A message that WhatsApp accepted is never sent again: its provider id is
stored before the activity reports success, and an attempt whose outcome is unknown waits for
the webhook that reconciles it (matched by biz_opaque_callback_data) before sending again.
"""

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import random
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError

from whatsapp_campaigns import metrics
from whatsapp_campaigns.activities.completions import CompletionBatches
from whatsapp_campaigns.activities.grouped_writes import Batched, GroupedWrites, Then
from whatsapp_campaigns.domain.engine import SenderLimited, SendMessageInput, SendResult
from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template, template_stopped_reason
from whatsapp_campaigns.store import catalog, messages, send_slots
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.messages import AttemptStart, SendJob
from whatsapp_campaigns.store.send_slots import Slot
from whatsapp_campaigns.whatsapp.components import PreparedTemplate
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.provider import Provider, ProviderError, TemplateSend

TEMPLATE_CACHE_SECONDS = 60.0
# How long one attempt may keep waiting out throughput limits before the refusal counts as a
# failed attempt. With the reconcile wait before it (30 s) and a last call, an attempt stays
# well inside the send activity's 90 s start-to-close timeout.
THROUGHPUT_WAIT_BUDGET_SECONDS = 20.0
# A slot of the number's second (store/send_slots.py) is used only while at least this much of
# that second is left, so that the request reaches WhatsApp within the second it was counted in.
SLOT_MARGIN_SECONDS = 0.02
# Slots won but answered too late to use, in a row, before a send calls WhatsApp without one: a
# store that slow (a round trip near a second) cannot time a second, and the admission must
# only ever delay a send, never fail it (a refusal, 130429, is handled as before it existed).
LATE_SLOTS_BEFORE_CALLING = 3
# A send waiting for a second of its number heartbeats only once it has waited this long: each
# heartbeat is a write to its workflow's state on the Temporal server, and most waits last
# under a second (1 in 10 sends paid one with 16 campaigns on a loaded box: bench/RESULTS.md).
# Well inside the 20 s heartbeat timeout; a pause or cancel reaches a waiting send through the
# store, checked before each new try, not through a heartbeat.
ADMISSION_HEARTBEAT_AFTER_SECONDS = 5.0

_T = TypeVar("_T")


class SendActivities:
    def __init__(
        self,
        db: Database,
        providers: AccountProviders,
        *,
        reconcile_window: timedelta,
        template_cache_seconds: float = TEMPLATE_CACHE_SECONDS,
        admission: bool = True,
    ) -> None:
        """`reconcile_window`: an attempt that died after calling WhatsApp is settled by its
        "sent" webhook within seconds; after this long without one, WhatsApp did not accept it
        and sending again is safe. `admission`: call WhatsApp only within a second of the
        number that has room (store/send_slots.py); off only to measure the code without it
        (bench/number_rates.py --send-path)."""
        self._db = db
        self._providers = providers
        self._template_cache_seconds = template_cache_seconds
        # Each template read with its variables (PreparedTemplate), and when it was read.
        self._templates: dict[tuple[str, str, str], tuple[float, PreparedTemplate | None]] = {}
        self._template_reads: dict[tuple[str, str, str], asyncio.Lock] = {}
        # The claims and accepted ids of concurrent sends, committed together.
        self._writes = GroupedWrites(db, lock=messages.lock_in_id_order)
        # The claims of a group, one batch (made once: a batch is known by its function).
        self._claims = functools.partial(
            _claim_admitted, reconcile_window=reconcile_window, admit=admission
        )
        # Which sends waiting for a slot of their number ask first (utility before marketing).
        self._waits = send_slots.PriorityWaits()
        # A campaign's finished sends return together (fewer workflow tasks).
        self._completions = CompletionBatches()

    @property
    def store_transactions(self) -> int:
        """The send path's grouped transactions committed so far (benchmarks)."""
        return self._writes.transactions

    @activity.defn(name="send_message")
    async def send_message(self, input: SendMessageInput) -> SendResult:
        return await self._completions.together(self._send(input))

    async def _send(self, input: SendMessageInput) -> SendResult:
        start, slot = await self._start_attempt(input.message_id)
        if start.settled is not None:
            return SendResult(message_id=input.message_id, status=start.settled)
        if start.job is None:  # the campaign was paused or cancelled when this send was due
            return SendResult(message_id=input.message_id, halted=True)
        job = start.job
        template = await self._template(job)
        if template is not None and template.status.stops_campaigns:
            # Confirmed from the store: the cached copy may predate the approval that let the
            # campaign resume, which must not pause it again.
            template = await self._template(job, fresh=True)
        if template is not None and template.status.stops_campaigns:
            # Meta paused or disabled it: pause the campaign rather than burn the message.
            await asyncio.to_thread(messages.hand_back_attempt, self._db, job.message_id)
            await self._pause_for_template(job, template)
            return SendResult(message_id=job.message_id, halted=True)
        try:
            send = TemplateSend(
                sender_phone_number_id=job.sender_phone_number_id,
                to=job.phone_e164,
                template=job.template_name,
                language=job.language,
                components=await self._components(job),
                biz_opaque_callback_data=str(job.message_id),
            )
            provider = await self._providers.provider(job.account_id)
            accepted = await self._send_slowing_down(job, send, provider, slot)
        except ProviderError as error:
            raise await self._failed(job, error) from error
        if accepted is None:  # paused or cancelled while slowed down: handed back
            return SendResult(message_id=job.message_id, halted=True)
        return accepted

    async def _send_slowing_down(
        self, job: SendJob, send: TemplateSend, provider: Provider, slot: "_HeldSlot | None"
    ) -> SendResult | None:
        """Call WhatsApp, each call inside a second of the number that has room for it
        (`_admitted`). On a throughput limit (130429: refused before WhatsApp looked at the
        message) wait and call again within this attempt, so a burst slows the campaign down
        instead of spending the message's attempts (SPEC §4 rule 6). Before each new call the
        campaign must still be sending (else the message is handed back: None) and the
        attempt's clock restarts, so reconciliation counts from the latest call."""
        started = time.monotonic()
        for call in itertools.count(1):
            if job.sender_rate is not None and not await self._admitted(job, slot, started):
                return None
            slot = None  # a slot admits one call
            try:
                return await _despite_cancellation(self._call(job, send, provider))
            except ProviderError as error:
                if error.error_class is not ErrorClass.THROUGHPUT_LIMITED:
                    raise
                # Jittered, so refused sends do not all come back at the same instant.
                wait = job.policy.throughput_backoff.total_seconds() * random.uniform(0.5, 1.5)
                if time.monotonic() - started + wait > THROUGHPUT_WAIT_BUDGET_SECONDS:
                    raise  # a failed attempt after all; Temporal retries it later
                metrics.record_rate_limit(error.error_class)
                if call == 1:  # one notice per attempt is enough to shrink the window
                    await self._report_sender_limited(job, error)
            await _wait_heartbeating(wait)
            if job.sender_rate is None and not await asyncio.to_thread(
                messages.resume_attempt, self._db, job.message_id
            ):
                return None  # (with admission, `_admitted` checks the campaign instead)
        raise AssertionError("unreachable")

    async def _admitted(self, job: SendJob, slot: "_HeldSlot | None", started: float) -> bool:
        """Wait until this send holds a slot of its number's current second (SPEC §11: no
        calendar second above the rate, across every worker process); the claim usually won
        one already. A full second means waiting for the next one, heartbeating, without
        spending an attempt; sends of a higher priority of the number get the slots first
        (`send_slots.PriorityWaits`). Before each new try the campaign must still be sending
        (False: the message was handed back), so a pause holds within a second. A store too
        slow to time a second (LATE_SLOTS_BEFORE_CALLING won slots expired before their answer
        came) or the throughput wait budget spent: WhatsApp is called without a slot, and
        judges."""
        late = 0
        number, priority_key = job.sender_phone_number_id, activity.info().priority.priority_key
        self._waits.asked(number, priority_key)
        while True:
            if slot is not None and slot.slot.won:
                await asyncio.sleep(slot.opens_in())  # counted in the next second: wait for it
                if slot.usable():
                    return True
                late += 1
            elif slot is not None:  # a full second: the next one, in priority order
                delay = self._waits.delay(priority_key, time.monotonic() - started)
                await asyncio.sleep(slot.until_next_second() + delay)
            waited = time.monotonic() - started
            if late >= LATE_SLOTS_BEFORE_CALLING or waited > THROUGHPUT_WAIT_BUDGET_SECONDS:
                activity.logger.warning(
                    "message %d: no usable send slot of %s (%d came too late, %.1f s waited):"
                    " calling WhatsApp without one",
                    job.message_id,
                    job.sender_phone_number_id,
                    late,
                    waited,
                )
                # As without admission: the campaign must still send, and the attempt's clock
                # restarts (no slot was won to restart it), so reconciliation counts from now.
                return await asyncio.to_thread(messages.resume_attempt, self._db, job.message_id)
            if waited >= ADMISSION_HEARTBEAT_AFTER_SECONDS:
                activity.heartbeat("waiting for a second of the sender number with room")
            ask = not self._waits.yields(number, priority_key, waited)
            if ask:
                self._waits.asked(number, priority_key)
            # (the write's `Then` step answers the Slot)
            readmit = functools.partial(_readmit, job=job, ask=ask)
            taken = cast(Slot | None, await self._writes.run(readmit, order=job.message_id))
            if taken is None:
                return False
            slot = _HeldSlot(taken, answered=time.monotonic())

    async def _call(self, job: SendJob, send: TemplateSend, provider: Provider) -> SendResult:
        """One call to WhatsApp; if it accepts, its message id is stored (the message is
        `sent`) before anything else happens. Refusals are raised (ProviderError)."""
        with metrics.time_send():  # the WhatsApp call only, whether it succeeds or not
            provider_message_id = await provider.send_template(send)
        status = await self._writes.run(
            Batched(messages.store_accepted, (job.message_id, provider_message_id)),
            order=job.message_id,
        )
        metrics.record_send(status)
        return SendResult(message_id=job.message_id, status=status)

    async def _start_attempt(self, message_id: int) -> "tuple[AttemptStart, _HeldSlot | None]":
        """Claim the message and, in the same write, a slot of its number's current second."""
        while True:
            claimed = await self._writes.run(Batched(self._claims, message_id), order=message_id)
            start, slot = cast("tuple[AttemptStart, Slot | None]", claimed)  # `Then` answered
            if start.unresolved_since is None:
                held = None if slot is None else _HeldSlot(slot, answered=time.monotonic())
                return start, held
            activity.heartbeat("waiting for the webhook of an earlier attempt")
            await asyncio.sleep(2)

    async def _components(self, job: SendJob) -> list[dict[str, object]]:
        prepared = await self._prepared(job)
        if prepared is None:
            raise ProviderError(
                ErrorClass.TEMPLATE, f"template {job.template_name} ({job.language}) not found"
            )
        try:
            return prepared.components(job.variables)
        except ValueError as error:
            raise ProviderError(ErrorClass.TEMPLATE, str(error)) from error

    async def _template(self, job: SendJob, *, fresh: bool = False) -> Template | None:
        prepared = await self._prepared(job, fresh=fresh)
        return None if prepared is None else prepared.template

    async def _prepared(self, job: SendJob, *, fresh: bool = False) -> PreparedTemplate | None:
        """Templates change rarely; each worker re-reads one at most once a minute (by
        default): often enough to notice that WhatsApp paused it. `fresh`: read it now."""
        key = (job.account_id, job.template_name, job.language)
        cached = self._templates.get(key)
        if not fresh and cached is not None and self._still_fresh(cached[0]):
            return cached[1]
        # One read per expiry: hundreds of sends in flight must not each queue a store read
        # (and wait behind each other in the thread pool) when the cached template expires.
        asked = time.monotonic()
        async with self._template_reads.setdefault(key, asyncio.Lock()):
            cached = self._templates.get(key)
            if (
                cached is not None
                and self._still_fresh(cached[0])
                and (not fresh or cached[0] > asked)
            ):
                return cached[1]
            template = await asyncio.to_thread(catalog.get_template, self._db, *key)
            prepared = None if template is None else PreparedTemplate.of(template)
            self._templates[key] = (time.monotonic(), prepared)
            return prepared

    def _still_fresh(self, read_at: float) -> bool:
        return time.monotonic() - read_at < self._template_cache_seconds

    async def _failed(self, job: SendJob, error: ProviderError) -> ApplicationError:
        """Record the failed attempt and say how Temporal should retry it."""
        error_class = error.error_class
        # Temporal's attempt count caps too: an attempt that failed before claiming the message
        # (a store error) leaves the store's count behind, and this is then the last one.
        last = max(job.attempt, activity.info().attempt) >= job.policy.max_attempts
        final = not error_class.is_retryable or last
        status = await asyncio.to_thread(
            messages.record_failure,
            self._db,
            job.message_id,
            error_class=error_class,
            code=error.code,
            title=error.title,
            final=final,
            # No answer from WhatsApp itself (none at all, or a gateway's 5xx): it may have
            # accepted the message; reconcile before sending again.
            outcome_unknown=error_class is ErrorClass.TRANSIENT and error.outcome_unknown,
        )
        metrics.record_send(status)  # latency already observed by time_send (if called)
        metrics.record_send_error(error_class)  # and a rate-limit hit if it is one
        activity.logger.warning(
            "message %d of campaign %s: attempt %d failed (%s, code %s: %s)%s",
            job.message_id,
            job.campaign_id,
            job.attempt,
            error_class.value,
            error.code,
            error.title,
            f" -> {status.value}" if final else "",
        )
        if not final and error_class in (
            ErrorClass.MESSAGING_LIMITED,
            ErrorClass.THROUGHPUT_LIMITED,
        ):
            await self._report_sender_limited(job, error)
        return ApplicationError(
            error.title,
            {"status": status.value, "code": error.code},
            type=error_class.value,
            non_retryable=final,
            next_retry_delay=None if final else job.policy.retry_delay(error_class),
            # An expected outcome, logged above in one line: no stack trace per failed send.
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _pause_for_template(self, job: SendJob, template: Template) -> None:
        """Signal `pause` with the reason (the account webhook usually paused it already; this
        covers a webhook that could not reach Temporal)."""
        reason = template_stopped_reason(
            template.name, template.language, template.status, "found at send time"
        )
        activity.logger.warning("campaign %s: %s", job.campaign_id, reason)
        workflow_id = activity.info().workflow_id
        if workflow_id is None:  # only when run outside a workflow (tests)
            return
        try:
            handle = activity.client().get_workflow_handle(workflow_id)
            await handle.signal("pause", {"reason": reason, "by": "whatsapp"})
        except RPCError as error:
            activity.logger.warning("could not pause the campaign: %s", error)

    async def _report_sender_limited(self, job: SendJob, error: ProviderError) -> None:
        """Tell the campaign to stop (messaging limit) or slow down (throughput limit)."""
        policy = job.policy
        wait = (
            policy.messaging_limit_backoff
            if error.error_class is ErrorClass.MESSAGING_LIMITED
            else policy.throughput_slowdown
        )
        if error.error_class is ErrorClass.MESSAGING_LIMITED:
            until = datetime.now(UTC) + wait
            await asyncio.to_thread(
                catalog.set_sender_throttled_until, self._db, job.sender_phone_number_id, until
            )
        notice = SenderLimited(
            error_class=error.error_class, retry_after=wait, code=error.code, title=error.title
        )
        workflow_id = activity.info().workflow_id
        if workflow_id is None:  # only when run outside a workflow (tests)
            return
        try:
            handle = activity.client().get_workflow_handle(workflow_id)
            await handle.signal("sender_limited", notice)
        except RPCError as error:  # a hint to the workflow; the send's outcome does not hang on it
            activity.logger.warning("could not tell the campaign to slow down: %s", error)


@dataclasses.dataclass(frozen=True)
class _HeldSlot:
    """A slot answer, with when (monotonic) it was answered: the store's clock read it between
    `slot.asked` and then, so its second began at the latest `slot.left - 1` after the answer
    and ends at the earliest `slot.left` after the ask."""

    slot: Slot
    answered: float

    def opens_in(self) -> float:
        return max(0.0, self.answered + self.slot.left - 1 - time.monotonic())

    def usable(self) -> bool:
        """Won, and enough of its second left for the call to reach WhatsApp within it."""
        ends = self.slot.asked + self.slot.left
        return self.slot.won and time.monotonic() < ends - SLOT_MARGIN_SECONDS

    def until_next_second(self) -> float:
        return max(0.0, self.answered + self.slot.left - time.monotonic()) + 0.001


def _claim_admitted(
    connection: Connection, message_ids: list[int], *, reconcile_window: timedelta, admit: bool
) -> "list[tuple[AttemptStart, Slot | None] | Then]":
    """The claims of a group, and a slot for each message claimed: one grouped write, no extra
    transaction (the slots as the group's second steps, numbers in order: `Then`; one
    statement takes the slots of all of a number's claims: `_NumberSlots`)."""
    starts = messages.claim_attempts(connection, message_ids, reconcile_window=reconcile_window)
    if not admit:
        return [_unadmitted(start) for start in starts]
    wanted = collections.Counter(
        (start.job.sender_phone_number_id, start.job.sender_rate)
        for start in starts
        if start.job is not None and start.job.sender_rate is not None
    )
    slots = {key: _NumberSlots(*key, count=count) for key, count in wanted.items()}
    answers: list[tuple[AttemptStart, Slot | None] | Then] = []
    for start in starts:
        job = start.job
        if job is None or job.sender_rate is None:
            answers.append((start, None))
            continue
        number_slots = slots[job.sender_phone_number_id, job.sender_rate]
        answers.append(Then(number_slots.number, functools.partial(number_slots.take, start)))
    return answers


def _unadmitted(start: AttemptStart) -> tuple[AttemptStart, None]:
    """A claim whose send calls WhatsApp without a slot (admission off: benchmarks)."""
    if start.job is None:
        return start, None
    return dataclasses.replace(start, job=dataclasses.replace(start.job, sender_rate=None)), None


@dataclasses.dataclass
class _NumberSlots:
    """The slots of one number for a group's claims of it, taken in one statement by the
    first claim's second step; each step answers its claim with one of them."""

    number: str
    rate: int
    count: int
    _slots: Iterator[Slot] | None = None

    def take(self, start: AttemptStart, connection: Connection) -> tuple[AttemptStart, Slot]:
        """`start`'s slot (the claims' in id order: the first ones win if not all can)."""
        if self._slots is None:
            taken = send_slots.take_slots(connection, self.number, self.rate, self.count)
            self._slots = iter(taken)
        return start, next(self._slots)


def _readmit(connection: Connection, *, job: SendJob, ask: bool) -> "Then | Slot | None":
    """Another try for a slot, while the campaign may still send (None: handed back); without
    `ask`, the answer of a full second (higher-priority sends go first). A won slot restarts
    the attempt's clock: WhatsApp is called now, maybe seconds after the claim."""
    rate = job.sender_rate
    assert rate is not None
    if not messages.still_sendable(connection, job.message_id):
        return None
    if not ask:
        return send_slots.pass_slot(connection)

    def take(connection: Connection) -> Slot:
        slot = send_slots.take_slot(connection, job.sender_phone_number_id, rate)
        if slot.won:
            messages.restart_attempt_clock(connection, job.message_id)
        return slot

    return Then(job.sender_phone_number_id, take)


async def _wait_heartbeating(seconds: float) -> None:
    """Sleep, heartbeating every few seconds so the 20 s heartbeat timeout never fires."""
    while seconds > 0:
        activity.heartbeat("throughput limited: waiting before calling again")
        await asyncio.sleep(min(seconds, 5.0))
        seconds -= 5.0


async def _despite_cancellation(call: Coroutine[Any, Any, _T]) -> _T:
    """Run `call` to its end even when the activity is cancelled meanwhile, then let the
    cancellation through. Once a request is on its way, WhatsApp may accept it whatever we do;
    its answer must be stored, or a message WhatsApp accepted (and charges for) would end
    `cancelled` or `failed`. A refusal that comes back meanwhile changes nothing: the message
    was not sent, and the campaign's own cancel or deadline gives it its final status."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
