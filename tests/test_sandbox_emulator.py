"""The sandbox emulator (SPEC §7) through the in-process provider: magic numbers, template
states, limits, failure mix, latency and status webhooks."""

import asyncio
import json
import time
from typing import Any

import pytest

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template, TemplateStatus
from whatsapp_campaigns.whatsapp.components import template_components
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    SANDBOX_APP_SECRET,
    SANDBOX_BUSINESS_ACCOUNT_ID,
    SANDBOX_SENDER_ID,
    SANDBOX_TEMPLATES,
)
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider
from whatsapp_campaigns.whatsapp.sandbox.webhooks import CallbackWebhookSink
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER, is_valid_signature

ORDINARY = "+12025550199"
ORDER_UPDATE = next(t for t in SANDBOX_TEMPLATES if t.name == "order_update")
COMPONENTS = template_components(ORDER_UPDATE, {"name": "Ana", "order_id": "A-1"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(
    to: str = ORDINARY,
    *,
    callback: str = "m-1",
    template: str = "order_update",
    components: list[dict[str, Any]] | None = None,
    sender: str = SANDBOX_SENDER_ID,
) -> TemplateSend:
    return TemplateSend(
        sender_phone_number_id=sender,
        to=to,
        template=template,
        language="en",
        components=COMPONENTS if components is None else components,
        biz_opaque_callback_data=callback,
    )


async def outcome(provider: SandboxProvider, send: TemplateSend) -> ErrorClass | str:
    """ "accepted", or the class of the error."""
    try:
        await provider.send_template(send)
    except ProviderError as error:
        return error.error_class
    return "accepted"


async def refusal(provider: SandboxProvider, send: TemplateSend) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(send)
    return raised.value


class Inbox:
    """A webhook sink that keeps every (parsed body, headers) it is given."""

    def __init__(self) -> None:
        self.posts: list[tuple[bytes, dict[str, str]]] = []

    async def deliver(self, body: bytes, headers: dict[str, str]) -> None:
        self.posts.append((body, headers))

    def statuses(self) -> list[str]:
        return [
            s["status"]
            for body, _ in self.posts
            for s in json.loads(body)["entry"][0]["changes"][0]["value"].get("statuses", [])
        ]

    def values(self) -> list[dict[str, Any]]:
        return [json.loads(body)["entry"][0]["changes"][0]["value"] for body, _ in self.posts]


def with_inbox(**options: Any) -> tuple[SandboxProvider, Inbox]:
    inbox = Inbox()
    emulator = SandboxEmulator(
        webhook_sink=CallbackWebhookSink(inbox.deliver), webhook_delay=0.0, **options
    )
    return SandboxProvider(emulator), inbox


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider(SandboxEmulator())


# ------------------------------------------------------------------------------- accepted


async def test_an_ordinary_number_is_accepted_with_a_wamid(provider: SandboxProvider) -> None:
    message_id = await provider.send_template(message())
    assert message_id.startswith("wamid.")


async def test_accepted_sends_are_recorded_with_their_callback_data(
    provider: SandboxProvider,
) -> None:
    await provider.send_template(message(callback="msg-42"))
    (sent,) = provider.emulator.accepted_sends
    assert (sent.to, sent.template, sent.biz_opaque_callback_data) == (
        "12025550199",
        "order_update",
        "msg-42",
    )


async def test_concurrent_sends_get_distinct_ids(provider: SandboxProvider) -> None:
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 1000)
    sends = [message(f"+1202555{2000 + i:04d}", callback=str(i)) for i in range(300)]
    ids = await asyncio.gather(*(provider.send_template(s) for s in sends))
    assert len(set(ids)) == 300 == len(provider.emulator.accepted_sends)


async def test_the_answer_has_the_cloud_api_shape() -> None:
    emulator = SandboxEmulator()
    parameters = [{"type": "text", "text": "Ana", "parameter_name": "name"}]
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "12025550199",
        "type": "template",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": parameters}],
        },
    }
    answer = await emulator.send(SANDBOX_SENDER_ID, body, access_token="t")
    assert answer.status_code == 200
    assert answer.body["messaging_product"] == "whatsapp"
    assert answer.body["contacts"] == [{"input": "12025550199", "wa_id": "12025550199"}]
    assert answer.body["messages"][0]["id"].startswith("wamid.")


# -------------------------------------------------------------------------- magic numbers


async def test_0101_is_an_invalid_contact_on_every_attempt(provider: SandboxProvider) -> None:
    for _ in range(3):
        error = await refusal(provider, message("+12025550101"))
        assert (error.error_class, error.code) == (ErrorClass.INVALID_CONTACT, 131026)


async def test_0102_is_blocked(provider: SandboxProvider) -> None:
    error = await refusal(provider, message("+12025550102"))
    assert (error.error_class, error.code) == (ErrorClass.BLOCKED, 131050)


async def test_0103_hits_the_messaging_limit_on_the_first_attempt_only(
    provider: SandboxProvider,
) -> None:
    first = await refusal(provider, message("+12025550103"))
    assert (first.error_class, first.code) == (ErrorClass.MESSAGING_LIMITED, 131048)
    assert await outcome(provider, message("+12025550103")) == "accepted"


async def test_0103_counts_its_first_attempt_per_sender_and_recipient(
    provider: SandboxProvider,
) -> None:
    await outcome(provider, message("+12025550103", callback="a"))
    assert await outcome(provider, message("+12025550103", callback="b")) == "accepted"


async def test_0104_fails_transiently_twice_then_is_accepted(provider: SandboxProvider) -> None:
    outcomes = [await outcome(provider, message("+12025550104")) for _ in range(3)]
    assert outcomes == [ErrorClass.TRANSIENT, ErrorClass.TRANSIENT, "accepted"]


async def test_0104_counts_attempts_per_callback_data(provider: SandboxProvider) -> None:
    for _ in range(3):
        await outcome(provider, message("+12025550104", callback="first"))
    assert await outcome(provider, message("+12025550104", callback="second")) is (
        ErrorClass.TRANSIENT
    )
    assert provider.emulator.attempts("+12025550104", "second") == 1


async def test_0104_transient_error_carries_an_http_status(provider: SandboxProvider) -> None:
    error = await refusal(provider, message("+12025550104"))
    assert error.http_status is not None and error.http_status >= 500


async def test_0105_fails_transiently_on_every_attempt(provider: SandboxProvider) -> None:
    outcomes = {await outcome(provider, message("+12025550105")) for _ in range(5)}
    assert outcomes == {ErrorClass.TRANSIENT}


@pytest.mark.parametrize("to", ["+12025550106", "+12025550107", "+12025550108"])
async def test_numbers_with_a_webhook_fate_are_accepted(provider: SandboxProvider, to: str) -> None:
    assert await outcome(provider, message(to)) == "accepted"


async def test_a_forced_outcome_applies_to_the_normalized_number(
    provider: SandboxProvider,
) -> None:
    provider.emulator.force_outcome("+44 7700 900001", "invalid_contact")
    assert await outcome(provider, message("+447700900001")) is ErrorClass.INVALID_CONTACT


# ------------------------------------------------------------------------ template checks


async def test_an_unknown_template_is_132001(provider: SandboxProvider) -> None:
    error = await refusal(provider, message(template="nope"))
    assert (error.error_class, error.code) == (ErrorClass.TEMPLATE, 132001)


async def test_a_pending_template_is_132001_not_approved(provider: SandboxProvider) -> None:
    components = template_components(SANDBOX_TEMPLATES[2], {"name": "Ana"})
    error = await refusal(provider, message(template="promo_pending", components=components))
    assert (error.code, error.error_class) == (132001, ErrorClass.TEMPLATE)
    assert "not approved" in (error.details or "")


async def test_a_paused_template_is_132015(provider: SandboxProvider) -> None:
    components = template_components(SANDBOX_TEMPLATES[3], {"name": "Ana"})
    error = await refusal(provider, message(template="promo_paused", components=components))
    assert (error.code, error.error_class) == (132015, ErrorClass.TEMPLATE)


async def test_a_disabled_template_is_132016(provider: SandboxProvider) -> None:
    provider.emulator.set_template_status("order_update", TemplateStatus.DISABLED)
    error = await refusal(provider, message())
    assert (error.code, error.error_class) == (132016, ErrorClass.TEMPLATE)


async def test_a_parameter_count_mismatch_is_132000(provider: SandboxProvider) -> None:
    error = await refusal(provider, message(components=[]))
    assert (error.code, error.error_class) == (132000, ErrorClass.TEMPLATE)
    assert "(0)" in (error.details or "") and "(2)" in (error.details or "")


async def test_an_unknown_sender_is_an_account_error(provider: SandboxProvider) -> None:
    error = await refusal(provider, message(sender="nobody"))
    assert (error.code, error.error_class) == (133010, ErrorClass.ACCOUNT)


async def test_a_missing_token_is_190_with_http_401() -> None:
    answer = await SandboxEmulator().send(SANDBOX_SENDER_ID, {}, access_token=None)
    assert answer.status_code == 401 and answer.body["error"]["code"] == 190


# ---------------------------------------------------------------------------------- limits


async def test_throughput_beyond_the_sender_rate_is_130429_with_http_400() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock))
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 5)
    outcomes = [await outcome(provider, message(callback=str(i))) for i in range(6)]
    assert outcomes == ["accepted"] * 5 + [ErrorClass.THROUGHPUT_LIMITED]
    error = await refusal(provider, message(callback="again"))
    assert (error.code, error.http_status) == (130429, 400)


async def test_a_strict_sandbox_counts_throughput_per_calendar_second() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock, pair_limit=100, strict_throughput=True))
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 5)
    clock.now = 1000.9
    for i in range(5):
        await provider.send_template(message(callback=str(i)))
    clock.now = 1000.99  # the same second: full, whatever a token bucket would have refilled
    assert await outcome(provider, message(callback="x")) is ErrorClass.THROUGHPUT_LIMITED
    clock.now = 1001.0  # the next calendar second: five more
    for i in range(5):
        assert await outcome(provider, message(callback=f"next {i}")) == "accepted"
    assert await outcome(provider, message(callback="y")) is ErrorClass.THROUGHPUT_LIMITED


async def test_in_a_strict_sandbox_a_quiet_second_gives_no_credit_to_the_next() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock, pair_limit=100, strict_throughput=True))
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 3)
    clock.now = 1005.0  # five quiet seconds
    outcomes = [await outcome(provider, message(callback=str(i))) for i in range(4)]
    assert outcomes == ["accepted"] * 3 + [ErrorClass.THROUGHPUT_LIMITED]


async def test_a_tolerant_sandbox_lets_a_paced_client_burst_one_seconds_worth() -> None:
    """The default: a client pacing itself at the rate is not refused for its jitter."""
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock, pair_limit=100))
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 3)
    clock.now = 1000.9
    outcomes = [await outcome(provider, message(callback=str(i))) for i in range(4)]
    assert outcomes == ["accepted"] * 3 + [ErrorClass.THROUGHPUT_LIMITED]
    clock.now = 1001.0  # a new calendar second, but only 0.1 s of refill: still refused
    assert await outcome(provider, message(callback="x")) is ErrorClass.THROUGHPUT_LIMITED
    clock.now = 1001.3  # about one token back
    assert await outcome(provider, message(callback="y")) == "accepted"


async def test_the_sandbox_reports_the_busiest_second_and_the_refusals() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock, pair_limit=100, strict_throughput=True))
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 4)
    for i in range(6):  # 4 accepted, 2 refused
        await outcome(provider, message(callback=str(i)))
    clock.now += 1
    await provider.send_template(message(callback="later"))
    assert provider.emulator.throughput(SANDBOX_SENDER_ID) == (4, 2)


async def test_recipients_beyond_the_tier_in_24_hours_hit_the_messaging_limit() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock))
    provider.emulator.set_sender_tier(SANDBOX_SENDER_ID, 2)
    assert await outcome(provider, message("+12025552001")) == "accepted"
    assert await outcome(provider, message("+12025552002")) == "accepted"
    error = await refusal(provider, message("+12025552003"))
    assert (error.code, error.error_class) == (131048, ErrorClass.MESSAGING_LIMITED)
    assert await outcome(provider, message("+12025552001", callback="again")) == "accepted"
    clock.now += 24 * 3600
    assert await outcome(provider, message("+12025552003", callback="next day")) == "accepted"


async def test_too_many_messages_to_one_recipient_hit_the_pair_rate_limit() -> None:
    clock = FakeClock()
    provider = SandboxProvider(SandboxEmulator(clock=clock, pair_limit=2, pair_window=60))
    for i in range(2):
        await provider.send_template(message(callback=str(i)))
    error = await refusal(provider, message(callback="third"))
    assert (error.code, error.error_class) == (131056, ErrorClass.PAIR_LIMITED)
    clock.now += 60
    assert await outcome(provider, message(callback="later")) == "accepted"


# ----------------------------------------------------------------- failure mix and latency


async def test_the_failure_mix_is_off_by_default(provider: SandboxProvider) -> None:
    provider.emulator.set_sender_rate(SANDBOX_SENDER_ID, 1000)
    sends = [message(f"+1202555{3000 + i:04d}") for i in range(200)]
    outcomes = {await outcome(provider, s) for s in sends}
    assert outcomes == {"accepted"}


async def test_the_failure_mix_draws_classes_with_a_seeded_rng() -> None:
    emulators = [
        SandboxEmulator(failure_mix={"transient": 0.3, ErrorClass.BLOCKED: 0.2}, seed=7)
        for _ in range(2)
    ]
    results = []
    for emulator in emulators:
        emulator.set_sender_rate(SANDBOX_SENDER_ID, 1000)
        provider = SandboxProvider(emulator)
        results.append(
            [await outcome(provider, message(f"+1202555{4000 + i:04d}")) for i in range(400)]
        )
    assert results[0] == results[1]
    share = {k: results[0].count(k) / 400 for k in set(results[0])}
    assert share.keys() == {"accepted", ErrorClass.TRANSIENT, ErrorClass.BLOCKED}
    assert 0.2 < share[ErrorClass.TRANSIENT] < 0.4 and 0.1 < share[ErrorClass.BLOCKED] < 0.3


async def test_latency_delays_each_answer(provider: SandboxProvider) -> None:
    provider.emulator.latency = 0.05
    started = time.monotonic()
    await provider.send_template(message())
    assert time.monotonic() - started >= 0.05


# -------------------------------------------------------------------------------- webhooks


async def test_an_ordinary_message_is_sent_delivered_then_read() -> None:
    provider, inbox = with_inbox()
    message_id = await provider.send_template(message(callback="msg-1"))
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["sent", "delivered", "read"]
    for value in inbox.values():
        (status,) = value["statuses"]
        assert status["id"] == message_id
        assert status["biz_opaque_callback_data"] == "msg-1"
        assert status["recipient_id"] == "12025550199"


async def test_webhooks_have_the_cloud_api_envelope() -> None:
    provider, inbox = with_inbox()
    await provider.send_template(message())
    await provider.emulator.drain_webhooks()
    body = json.loads(inbox.posts[0][0])
    assert body["object"] == "whatsapp_business_account"
    (entry,) = body["entry"]
    assert entry["id"] == SANDBOX_BUSINESS_ACCOUNT_ID
    (change,) = entry["changes"]
    assert change["field"] == "messages"
    assert change["value"]["messaging_product"] == "whatsapp"
    assert change["value"]["metadata"] == {
        "display_phone_number": "12025550100",
        "phone_number_id": SANDBOX_SENDER_ID,
    }
    assert change["value"]["statuses"][0]["timestamp"].isdigit()


async def test_webhooks_are_signed_with_the_app_secret() -> None:
    provider, inbox = with_inbox()
    await provider.send_template(message())
    await provider.emulator.drain_webhooks()
    for body, headers in inbox.posts:
        assert is_valid_signature(body, headers[SIGNATURE_HEADER], SANDBOX_APP_SECRET)


async def test_0106_is_read_then_replies_stop_to_the_message() -> None:
    provider, inbox = with_inbox()
    message_id = await provider.send_template(message("+12025550106"))
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["sent", "delivered", "read"]
    reply = inbox.values()[-1]
    (inbound,) = reply["messages"]
    assert inbound["from"] == "12025550106" and inbound["type"] == "text"
    assert inbound["text"] == {"body": "STOP"}
    assert inbound["context"]["id"] == message_id
    assert reply["contacts"][0]["wa_id"] == "12025550106"


async def test_0107_is_delivered_and_never_read() -> None:
    provider, inbox = with_inbox()
    await provider.send_template(message("+12025550107"))
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["sent", "delivered"]


async def test_0108_is_accepted_then_fails_undeliverable() -> None:
    provider, inbox = with_inbox()
    await provider.send_template(message("+12025550108"))
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["sent", "failed"]
    failed = inbox.values()[-1]["statuses"][0]
    (error,) = failed["errors"]
    assert error["code"] == 131026 and error["title"] and error["error_data"]["details"]


async def test_duplicate_option_delivers_each_webhook_twice() -> None:
    provider, inbox = with_inbox(duplicate_webhooks=True)
    await provider.send_template(message())
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["sent", "sent", "delivered", "delivered", "read", "read"]


async def test_reorder_option_delivers_statuses_last_first_with_true_timestamps() -> None:
    provider, inbox = with_inbox(reorder_webhooks=True)
    await provider.send_template(message())
    await provider.emulator.drain_webhooks()
    assert inbox.statuses() == ["read", "delivered", "sent"]
    stamps = [int(v["statuses"][0]["timestamp"]) for v in inbox.values()]
    assert stamps == sorted(stamps, reverse=True)


async def test_refused_sends_post_no_webhooks() -> None:
    provider, inbox = with_inbox()
    await outcome(provider, message("+12025550101"))
    await provider.emulator.drain_webhooks()
    assert inbox.posts == []


async def test_aclose_cancels_pending_webhooks() -> None:
    inbox = Inbox()
    emulator = SandboxEmulator(webhook_sink=CallbackWebhookSink(inbox.deliver), webhook_delay=30)
    await SandboxProvider(emulator).send_template(message())
    await emulator.aclose()
    await emulator.drain_webhooks()
    assert inbox.posts == []


async def test_a_failing_sink_does_not_break_sending() -> None:
    async def broken(body: bytes, headers: dict[str, str]) -> None:
        raise RuntimeError("receiver down")

    emulator = SandboxEmulator(webhook_sink=CallbackWebhookSink(broken), webhook_delay=0)
    provider = SandboxProvider(emulator)
    await provider.send_template(message())
    await emulator.drain_webhooks()
    assert await outcome(provider, message(callback="next")) == "accepted"


# ------------------------------------------------------------------------------- templates


async def test_list_templates_gives_the_fixtures_with_their_states(
    provider: SandboxProvider,
) -> None:
    templates = {t.name: t for t in await provider.list_templates(SANDBOX_BUSINESS_ACCOUNT_ID)}
    assert templates.keys() == {
        "order_update",
        "spring_sale",
        "promo_pending",
        "promo_paused",
        "promo_media",
        "appointment_reminder",
    }
    assert templates["order_update"].variables == ["name", "order_id"]
    assert templates["promo_pending"].status is TemplateStatus.PENDING
    assert templates["promo_paused"].status is TemplateStatus.PAUSED


async def test_list_templates_follows_every_page() -> None:
    many = [Template(name=f"t{i:03d}", variables=[]) for i in range(230)]
    provider = SandboxProvider(SandboxEmulator(templates=many))
    names = [t.name for t in await provider.list_templates(SANDBOX_BUSINESS_ACCOUNT_ID)]
    assert names == [t.name for t in many]


async def test_list_templates_of_an_unknown_account_fails(provider: SandboxProvider) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.list_templates("someone-else")
    assert raised.value.code == 100
