"""The sandbox's core, shared by the in-process provider and the HTTP server (SPEC §7).

It answers a send exactly as the Cloud API would (same checks, codes and JSON), enforces the
sender's throughput, the pair rate and the messaging-limit tier, plays the magic numbers, and
schedules the status webhooks of accepted messages as asyncio tasks.
"""

import asyncio
import base64
import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template, TemplateStatus
from whatsapp_campaigns.whatsapp.sandbox import errors
from whatsapp_campaigns.whatsapp.sandbox.account_events import (
    phone_number_json,
    quality_update_body,
    template_status_body,
)
from whatsapp_campaigns.whatsapp.sandbox.errors import SandboxError
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    SANDBOX_APP_SECRET,
    SANDBOX_BUSINESS_ACCOUNT_ID,
    SANDBOX_DISPLAY_NUMBER,
    SANDBOX_HIGH_DISPLAY_NUMBER,
    SANDBOX_HIGH_SENDER_ID,
    SANDBOX_HIGH_SENDER_RATE,
    SANDBOX_SENDER_ID,
    SANDBOX_SENDER_RATE,
    SANDBOX_SENDER_TIER,
    SANDBOX_TEMPLATES,
    SANDBOX_VERIFIED_NAME,
)
from whatsapp_campaigns.whatsapp.sandbox.template_checks import check_components
from whatsapp_campaigns.whatsapp.sandbox.throughput import SenderThroughput
from whatsapp_campaigns.whatsapp.sandbox.webhooks import (
    WebhookSink,
    inbound_text_value,
    status_item,
    webhook_body,
)
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

DAY_SECONDS = 24 * 3600.0

# Magic recipients (SPEC §7), as wa_id digits.
INVALID_CONTACT = "12025550101"
BLOCKED = "12025550102"
MESSAGING_LIMITED_ONCE = "12025550103"
TRANSIENT_TWICE = "12025550104"
TRANSIENT_ALWAYS = "12025550105"
REPLIES_STOP = "12025550106"
NEVER_READ = "12025550107"
FAILS_AFTER_ACCEPT = "12025550108"


@dataclass
class SandboxSender:
    phone_number_id: str
    display_number: str
    business_account_id: str = SANDBOX_BUSINESS_ACCOUNT_ID
    rate_per_second: float = SANDBOX_SENDER_RATE
    tier: int = SANDBOX_SENDER_TIER  # unique recipients per rolling 24 h
    verified_name: str = SANDBOX_VERIFIED_NAME
    quality_rating: str = "GREEN"

    @property
    def throughput_level(self) -> str:
        return "HIGH" if self.rate_per_second >= SANDBOX_HIGH_SENDER_RATE else "STANDARD"

    @property
    def messaging_limit(self) -> str:
        """Meta's tier name: 100000 -> TIER_100K, 1000 -> TIER_1K, 250 -> TIER_250."""
        if self.tier >= 1_000 and self.tier % 1_000 == 0:
            return f"TIER_{self.tier // 1_000}K"
        return f"TIER_{self.tier}"


@dataclass(frozen=True)
class SandboxResponse:
    """An HTTP answer: status code and JSON body."""

    status_code: int
    body: dict[str, Any]


@dataclass(frozen=True)
class AcceptedSend:
    """A message the sandbox accepted: what tests count to prove "sent exactly once"."""

    message_id: str
    sender_phone_number_id: str
    to: str  # wa_id: E.164 digits, no +
    template: str
    language: str
    biz_opaque_callback_data: str | None
    at: datetime


class _Fate(Enum):
    """What happens to an accepted message afterwards, told by status webhooks."""

    READ = "read"
    DELIVERED = "delivered"  # never read
    READ_THEN_STOP = "read then STOP"
    UNDELIVERABLE = "failed"


@dataclass
class _SenderState:
    throughput: SenderThroughput
    # Recipients messaged in the rolling 24 h, by time of their latest message, oldest first.
    recipients: dict[str, float] = field(default_factory=dict)
    # Accept times per recipient in the pair-rate window.
    pairs: dict[str, deque[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Webhook:
    delay: float  # seconds after the previous one
    body: dict[str, Any]


class SandboxEmulator:
    """A stand-in for the Cloud API (in-memory state, guarded by a lock).

    Latency (`latency`, seconds per call) and the random failure mix (`failure_mix`,
    probability per error class, seeded) are off by default; both may be changed at any time.
    Webhooks go to `webhook_sink` (none: no webhooks), each `webhook_delay` seconds after the
    previous one, optionally duplicated or delivered in reverse order.
    """

    def __init__(
        self,
        *,
        templates: Iterable[Template] = SANDBOX_TEMPLATES,
        business_account_id: str = SANDBOX_BUSINESS_ACCOUNT_ID,
        senders: Iterable[SandboxSender] | None = None,
        latency: float = 0.0,
        failure_mix: Mapping[ErrorClass | str, float] | None = None,
        seed: int = 0,
        webhook_sink: WebhookSink | None = None,
        app_secret: str = SANDBOX_APP_SECRET,
        webhook_delay: float = 0.3,
        duplicate_webhooks: bool = False,
        reorder_webhooks: bool = False,
        pair_limit: int = 10,
        pair_window: float = 60.0,
        clock: Callable[[], float] = time.time,
        access_tokens: Iterable[str] | None = None,
        strict_throughput: bool = False,
    ) -> None:
        """`access_tokens`: the tokens the sandbox accepts, as Meta accepts only the tokens
        it issued (default: any non-empty token). `clock`: seconds since the epoch; each
        sender's sends are counted per calendar second of it. `strict_throughput`: at most the
        rate in every calendar second (default: a one-second token bucket; `throughput.py`)."""
        self.strict_throughput = strict_throughput
        self.latency = latency
        self.access_tokens = frozenset(access_tokens) if access_tokens is not None else None
        self.failure_mix: dict[ErrorClass | str, float] = dict(failure_mix or {})
        self.webhook_sink = webhook_sink
        self.app_secret = app_secret
        self.webhook_delay = webhook_delay
        self.duplicate_webhooks = duplicate_webhooks
        self.reorder_webhooks = reorder_webhooks
        self.pair_limit = pair_limit
        self.pair_window = pair_window
        self.accepted_sends: list[AcceptedSend] = []
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._templates: dict[str, list[Template]] = {business_account_id: list(templates)}
        self._senders: dict[str, SandboxSender] = {}
        self._state: dict[str, _SenderState] = {}
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._pair_attempts: dict[tuple[str, str], int] = {}
        self._forced: dict[str, ErrorClass] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        defaults = [
            SandboxSender(SANDBOX_SENDER_ID, SANDBOX_DISPLAY_NUMBER, business_account_id),
            SandboxSender(
                SANDBOX_HIGH_SENDER_ID,
                SANDBOX_HIGH_DISPLAY_NUMBER,
                business_account_id,
                rate_per_second=SANDBOX_HIGH_SENDER_RATE,
            ),
        ]
        for sender in senders if senders is not None else defaults:
            self.add_sender(sender)

    # ----------------------------------------------------------------------------- set-up

    def add_sender(self, sender: SandboxSender) -> None:
        with self._lock:
            self._senders[sender.phone_number_id] = sender
            self._state[sender.phone_number_id] = _SenderState(
                SenderThroughput(sender.rate_per_second, strict=self.strict_throughput)
            )

    def set_sender_rate(self, phone_number_id: str, rate_per_second: float) -> None:
        """Change a sender's throughput (Meta raises it to 1,000 on request) from now on."""
        with self._lock:
            self._senders[phone_number_id].rate_per_second = rate_per_second
            self._state[phone_number_id].throughput.rate = rate_per_second

    def throughput(self, phone_number_id: str) -> tuple[int, int]:
        """(the most sends accepted in one calendar second, sends refused 130429) so far."""
        with self._lock:
            limit = self._state[phone_number_id].throughput
            return limit.busiest_second(), limit.refused

    def set_sender_tier(self, phone_number_id: str, tier: int) -> None:
        with self._lock:
            self._senders[phone_number_id].tier = tier

    def set_template_status(
        self, name: str, status: TemplateStatus, *, language: str = "en"
    ) -> None:
        """Approve, pause or disable a template, as Meta's review and quality checks would."""
        with self._lock:
            for templates in self._templates.values():
                for i, template in enumerate(templates):
                    if (template.name, template.language) == (name, language):
                        templates[i] = template.model_copy(update={"status": status})

    async def change_template_status(
        self, name: str, status: TemplateStatus, *, language: str = "en", reason: str | None = None
    ) -> None:
        """`set_template_status`, then Meta's `message_template_status_update` webhook."""
        self.set_template_status(name, status, language=language)
        with self._lock:
            waba_ids = [
                waba
                for waba, templates in self._templates.items()
                if any((t.name, t.language) == (name, language) for t in templates)
            ]
        for waba in waba_ids:
            await self._announce(
                template_status_body(
                    business_account_id=waba,
                    template_id=f"{waba}-{name}-{language}",
                    name=name,
                    language=language,
                    event=status.value,
                    reason=reason,
                )
            )

    async def change_throughput(self, phone_number_id: str, level: str) -> None:
        """Meta moves a number to another throughput level (`HIGH`: 1,000 msg/s, `STANDARD`:
        80), then posts its `phone_number_quality_update` webhook."""
        rate = SANDBOX_HIGH_SENDER_RATE if level.upper() == "HIGH" else SANDBOX_SENDER_RATE
        self.set_sender_rate(phone_number_id, rate)
        sender = self._senders[phone_number_id]
        await self._announce(
            quality_update_body(
                business_account_id=sender.business_account_id,
                display_number=sender.display_number,
                event="THROUGHPUT_UPGRADE" if level.upper() == "HIGH" else "DOWNGRADE",
                current_limit="TIER_UNLIMITED"
                if level.upper() == "HIGH"
                else sender.messaging_limit,
            )
        )

    def phone_number(self, phone_number_id: str, *, access_token: str | None) -> SandboxResponse:
        """GET /{version}/{phone-number-id}: the number as the Graph API describes it."""
        if not self.accepts_token(access_token):
            return _error(errors.auth_failed())
        with self._lock:
            sender = self._senders.get(phone_number_id)
            if sender is None:
                return _error(errors.unknown_object(phone_number_id))
            return SandboxResponse(
                200,
                phone_number_json(
                    phone_number_id=sender.phone_number_id,
                    display_number=sender.display_number,
                    verified_name=sender.verified_name,
                    quality_rating=sender.quality_rating,
                    throughput_level=sender.throughput_level,
                    messaging_limit=sender.messaging_limit,
                ),
            )

    def accepts_token(self, access_token: str | None) -> bool:
        """Whether Meta would take this bearer token (any non-empty one unless configured)."""
        if not access_token:
            return False
        return self.access_tokens is None or access_token in self.access_tokens

    async def _announce(self, body: dict[str, Any]) -> None:
        """Post one account webhook now (awaited: the caller knows it was delivered)."""
        if self.webhook_sink is not None:
            await self._post_webhooks([_Webhook(0.0, body)])

    def force_outcome(self, phone: str, outcome: ErrorClass | str) -> None:
        """Make every send to `phone` fail with an error of class `outcome`."""
        with self._lock:
            self._forced[_digits(phone)] = ErrorClass(outcome)

    def attempts(self, to: str, biz_opaque_callback_data: str | None = None) -> int:
        """Send attempts seen for (default sender, `to`, callback data), throttled ones excepted."""
        key = (SANDBOX_SENDER_ID, _digits(to), biz_opaque_callback_data or "")
        with self._lock:
            return self._attempts.get(key, 0)

    # ------------------------------------------------------------------------------ sends

    async def send(
        self, phone_number_id: str, body: object, *, access_token: str | None
    ) -> SandboxResponse:
        """POST /{version}/{phone_number_id}/messages: the answer, after `latency`; webhooks of
        an accepted message are scheduled on the running event loop."""
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        response, webhooks = self.handle_send(phone_number_id, body, access_token=access_token)
        if webhooks and self.webhook_sink is not None:
            task = asyncio.get_running_loop().create_task(self._post_webhooks(webhooks))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return response

    def handle_send(
        self, phone_number_id: str, body: object, *, access_token: str | None
    ) -> tuple[SandboxResponse, list[_Webhook]]:
        """The synchronous core of `send`: the answer and the webhooks to post (no I/O)."""
        if not self.accepts_token(access_token):
            return _error(errors.auth_failed()), []
        with self._lock:
            sender = self._senders.get(phone_number_id)
            if sender is None:
                return _error(errors.sender_not_registered(phone_number_id)), []
            request = _parse_send(body)
            if isinstance(request, SandboxError):
                return _error(request), []
            refusal = self._check_template(sender, request)
            if refusal is None:
                refusal = self._check_limits(sender, request)
            if refusal is not None:
                return _error(refusal), []
            return self._accept(sender, request)

    def _check_template(
        self, sender: SandboxSender, request: "_SendRequest"
    ) -> SandboxError | None:
        templates = self._templates.get(sender.business_account_id, [])
        template = next(
            (t for t in templates if (t.name, t.language) == (request.template, request.language)),
            None,
        )
        if template is None:
            return errors.template_missing(request.template, request.language)
        if template.status in (TemplateStatus.PENDING, TemplateStatus.REJECTED):
            why = f"template {template.name} ({template.language}) is {template.status.value}"
            return errors.template_missing(
                request.template, request.language, f"{why}, not approved"
            )
        if template.status is TemplateStatus.PAUSED:
            return errors.template_paused(template.name)
        if template.status is TemplateStatus.DISABLED:
            return errors.template_disabled(template.name)
        return check_components(template, request.components)

    def _check_limits(self, sender: SandboxSender, request: "_SendRequest") -> SandboxError | None:
        """Throughput first (Meta refuses before looking further), then the recipient's fate."""
        now = self._clock()
        state = self._state[sender.phone_number_id]
        if not state.throughput.take(now):
            return errors.THROUGHPUT
        to = request.to
        key = (sender.phone_number_id, to, request.biz_opaque_callback_data or "")
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        pair_key = (sender.phone_number_id, to)
        pair_attempt = self._pair_attempts[pair_key] = self._pair_attempts.get(pair_key, 0) + 1
        forced = self._forced.get(to)
        if forced is not None:
            return errors.ERROR_BY_CLASS[forced]
        magic = _magic_refusal(to, attempt=attempt, pair_attempt=pair_attempt)
        if magic is not None:
            return magic
        if to not in _MAGIC and self.failure_mix:
            drawn = self._draw_failure()
            if drawn is not None:
                return errors.ERROR_BY_CLASS[drawn]
        sent = state.pairs.get(to)
        if sent is not None:
            while sent and now - sent[0] >= self.pair_window:
                sent.popleft()
            if len(sent) >= self.pair_limit:
                return errors.PAIR_RATE
        _forget_before(state.recipients, now - DAY_SECONDS)
        if to not in state.recipients and len(state.recipients) >= sender.tier:
            return errors.MESSAGING_LIMIT
        return None

    def _draw_failure(self) -> ErrorClass | None:
        roll = self._rng.random()
        for error_class, probability in self.failure_mix.items():
            roll -= probability
            if roll < 0:
                return ErrorClass(error_class)
        return None

    def _accept(
        self, sender: SandboxSender, request: "_SendRequest"
    ) -> tuple[SandboxResponse, list[_Webhook]]:
        now = self._clock()
        state = self._state[sender.phone_number_id]
        state.recipients.pop(request.to, None)  # re-inserted last: the dict stays time-ordered
        state.recipients[request.to] = now
        state.pairs.setdefault(request.to, deque()).append(now)
        message_id = f"wamid.{uuid.uuid4().hex}"
        self.accepted_sends.append(
            AcceptedSend(
                message_id=message_id,
                sender_phone_number_id=sender.phone_number_id,
                to=request.to,
                template=request.template,
                language=request.language,
                biz_opaque_callback_data=request.biz_opaque_callback_data,
                at=datetime.now(UTC),
            )
        )
        response = SandboxResponse(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": request.raw_to, "wa_id": request.to}],
                "messages": [{"id": message_id, "message_status": "accepted"}],
            },
        )
        return response, self._plan_webhooks(sender, request, message_id)

    # --------------------------------------------------------------------------- webhooks

    def _plan_webhooks(
        self, sender: SandboxSender, request: "_SendRequest", message_id: str
    ) -> list[_Webhook]:
        fate = _FATES.get(request.to, _Fate.READ)
        steps = {
            _Fate.READ: ["sent", "delivered", "read"],
            _Fate.DELIVERED: ["sent", "delivered"],
            _Fate.READ_THEN_STOP: ["sent", "delivered", "read"],
            _Fate.UNDELIVERABLE: ["sent", "failed"],
        }[fate]
        start = int(time.time())
        failure = [errors.UNDELIVERABLE.webhook_error()]
        # Timestamps follow the real order even when delivery is reordered.
        values = [
            {
                "statuses": [
                    status_item(
                        message_id=message_id,
                        status=status,
                        timestamp=start + i,
                        recipient_id=request.to,
                        biz_opaque_callback_data=request.biz_opaque_callback_data,
                        errors=failure if status == "failed" else None,
                    )
                ]
            }
            for i, status in enumerate(steps)
        ]
        if self.reorder_webhooks:
            values.reverse()
        if fate is _Fate.READ_THEN_STOP:
            values.append(
                inbound_text_value(
                    message_id=f"wamid.{uuid.uuid4().hex}",
                    sender_wa_id=request.to,
                    timestamp=start + len(steps),
                    text="STOP",
                    context_id=message_id,
                    business_number=sender.display_number,
                )
            )
        plan: list[_Webhook] = []
        for value in values:
            body = webhook_body(
                business_account_id=sender.business_account_id,
                phone_number_id=sender.phone_number_id,
                display_number=sender.display_number,
                value=value,
            )
            plan.append(_Webhook(self.webhook_delay, body))
            if self.duplicate_webhooks:
                plan.append(_Webhook(0.0, body))
        return plan

    async def _post_webhooks(self, webhooks: list[_Webhook]) -> None:
        for webhook in webhooks:
            if webhook.delay > 0:
                await asyncio.sleep(webhook.delay)
            body = json.dumps(webhook.body, separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, self.app_secret),
            }
            sink = self.webhook_sink
            if sink is None:
                return
            try:
                await sink.deliver(body, headers)
            except Exception:
                log.warning("sandbox webhook delivery failed", exc_info=True)

    @property
    def pending_webhooks(self) -> int:
        """Accepted messages whose status webhooks are still being posted."""
        return len(self._tasks)

    async def drain_webhooks(self) -> None:
        """Wait until every scheduled webhook was delivered (or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the webhooks not yet delivered, and close the sink."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        close = getattr(self.webhook_sink, "aclose", None)
        if close is not None:
            await close()

    # -------------------------------------------------------------------------- templates

    def templates_page(
        self, business_account_id: str, *, after: str | None, limit: int, next_url: str
    ) -> SandboxResponse:
        """GET /{version}/{waba_id}/message_templates: one page, and `paging.next` (the
        `next_url` with `after` set) when more follow."""
        with self._lock:
            templates = self._templates.get(business_account_id)
            if templates is None:
                return _error(errors.unknown_object(business_account_id))
            templates = list(templates)
        start = _decode_cursor(after)
        if start is None:
            return _error(errors.invalid_parameter(f"after: invalid cursor {after!r}"))
        limit = max(1, min(limit, 100))
        page = templates[start : start + limit]
        body: dict[str, Any] = {"data": [_template_json(t, business_account_id) for t in page]}
        cursors = {"before": _encode_cursor(start), "after": _encode_cursor(start + len(page))}
        body["paging"] = {"cursors": cursors}
        if start + limit < len(templates):
            separator = "&" if "?" in next_url else "?"
            body["paging"]["next"] = f"{next_url}{separator}limit={limit}&after={cursors['after']}"
        return SandboxResponse(200, body)


@dataclass(frozen=True)
class _SendRequest:
    raw_to: str
    to: str  # digits
    template: str
    language: str
    components: list[Any]
    biz_opaque_callback_data: str | None


def _parse_send(body: object) -> "_SendRequest | SandboxError":
    """The request fields the sandbox needs, or the error Meta gives for a malformed one."""
    if not isinstance(body, dict):
        return errors.invalid_parameter("the request body must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        return errors.missing_parameter("messaging_product must be 'whatsapp'")
    if body.get("type", "text") != "template":
        return errors.unsupported_type(body.get("type", "text"))
    raw_to = body.get("to")
    if not isinstance(raw_to, str) or not raw_to:
        return errors.missing_parameter("to is required")
    to = _digits(raw_to)
    if not 8 <= len(to) <= 15 or not raw_to.lstrip("+").replace(" ", "").isdigit():
        return errors.invalid_parameter(f"to: {raw_to!r} is not a phone number")
    template = body.get("template")
    language = template.get("language") if isinstance(template, dict) else None
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(template, dict) or not template.get("name") or not code:
        return errors.missing_parameter("template.name and template.language.code are required")
    components = template.get("components") or []
    if not isinstance(components, list):
        return errors.invalid_parameter("template.components must be a list")
    callback = body.get("biz_opaque_callback_data")
    if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
        return errors.invalid_parameter("biz_opaque_callback_data: a string of 512 at most")
    return _SendRequest(
        raw_to=raw_to,
        to=to,
        template=str(template["name"]),
        language=str(code),
        components=components,
        biz_opaque_callback_data=callback,
    )


_MAGIC = {
    INVALID_CONTACT,
    BLOCKED,
    MESSAGING_LIMITED_ONCE,
    TRANSIENT_TWICE,
    TRANSIENT_ALWAYS,
    REPLIES_STOP,
    NEVER_READ,
    FAILS_AFTER_ACCEPT,
}
_FATES = {
    REPLIES_STOP: _Fate.READ_THEN_STOP,
    NEVER_READ: _Fate.DELIVERED,
    FAILS_AFTER_ACCEPT: _Fate.UNDELIVERABLE,
}


def _magic_refusal(to: str, *, attempt: int, pair_attempt: int) -> SandboxError | None:
    """The synchronous error of a magic number at this attempt, if any. Attempts, not clock
    times, decide: the engine's tests skip time."""
    if to == INVALID_CONTACT:
        return errors.UNDELIVERABLE
    if to == BLOCKED:
        return errors.BLOCKED
    if to == MESSAGING_LIMITED_ONCE and pair_attempt == 1:
        return errors.MESSAGING_LIMIT
    if (to == TRANSIENT_TWICE and attempt <= 2) or to == TRANSIENT_ALWAYS:
        return errors.TRANSIENT
    return None


def _error(error: SandboxError) -> SandboxResponse:
    return SandboxResponse(error.http_status, error.body())


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


def _forget_before(last_seen: dict[str, float], cutoff: float) -> None:
    """Drop recipients last messaged at or before `cutoff` (the dict is time-ordered)."""
    while last_seen:
        oldest, at = next(iter(last_seen.items()))
        if at > cutoff:
            return
        del last_seen[oldest]


def _template_json(template: Template, business_account_id: str) -> dict[str, Any]:
    return {
        "name": template.name,
        "language": template.language,
        "status": template.status.value,
        "category": template.category.value,
        "id": f"{business_account_id}-{template.name}-{template.language}",
        "parameter_format": template.format.value,
        "components": template.components,
    }


def _encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except ValueError:
        return None
