"""`/webhooks/whatsapp` through the ASGI app: handshake, signature check, size limit, durable
receipt and batch application by the background applier."""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api_helpers import served
from tests.webhook_helpers import (
    APP_SECRET,
    VERIFY_TOKEN,
    later,
    message,
    opted_out_phones,
    reply_item,
    seed_messages,
    signed,
    status_item,
    webhook_body,
)
from whatsapp_campaigns.api import webhook_appliers
from whatsapp_campaigns.api.access_log import ACCESS_LOGGER
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.api.webhook_appliers import Change
from whatsapp_campaigns.api.webhook_ingest import WebhookIngest
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import status_updates
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER

URL = "/webhooks/whatsapp"
Client = httpx.AsyncClient


def _settings(db: Database, **extra: Any) -> Settings:
    return Settings(
        CAMPAIGNS_DATABASE_URL=db.url,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        **extra,
    )


def _running(app: FastAPI) -> contextlib.AbstractAsyncContextManager[Client]:
    """The app with its lifespan (the applier runs), and a client to it."""
    return served(app, base_url="http://receiver")


@pytest.fixture
def app(db: Database) -> FastAPI:
    return create_app(_settings(db), db)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[Client]:
    async with _running(app) as test_client:
        yield test_client


@pytest.fixture
def applier_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background applier never runs (as if the process died after answering): payloads
    wait in the inbox until a test calls `_settle`."""

    async def idle(self: WebhookIngest) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(WebhookIngest, "_apply_loop", idle)


async def _settle(app: FastAPI) -> None:
    """Wait until every received webhook is applied."""
    await app.state.webhook_ingest.settle()


async def _post(
    client: Client, body: dict[str, Any] | bytes, secret: str = APP_SECRET
) -> httpx.Response:
    raw, headers = signed(body, secret)
    return await client.post(URL, content=raw, headers=headers)


async def _handshake(client: Client, token: str) -> httpx.Response:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    return await client.get(URL, params=params)


async def test_handshake_with_our_verify_token_echoes_the_challenge(client: Client) -> None:
    response = await _handshake(client, VERIFY_TOKEN)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


async def test_handshake_with_a_wrong_verify_token_is_refused(client: Client) -> None:
    assert (await _handshake(client, "guess")).status_code == 403


async def test_signed_statuses_are_applied(client: Client, app: FastAPI, db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    body = webhook_body(statuses=[status_item(pid, "delivered", later(1))])
    response = await _post(client, body)
    assert (response.status_code, response.json()) == (200, {"received": True})
    await _settle(app)
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at) == ("delivered", later(1))


async def test_the_background_applier_applies_without_being_asked(
    client: Client, db: Database
) -> None:
    seeded = seed_messages(db)
    await _post(client, webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    for _ in range(200):
        if message(db, seeded.message_ids[0]).status == "read":
            break
        await asyncio.sleep(0.05)
    assert message(db, seeded.message_ids[0]).status == "read"


async def test_a_failed_status_keeps_the_whatsapp_error(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    item = status_item(pid, "failed", later(1), error=(131026, "Message undeliverable"))
    await _post(client, webhook_body(statuses=[item]))
    await _settle(app)
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code, row.error_title) == (
        "failed",
        131026,
        "Message undeliverable",
    )


async def test_a_status_for_a_lost_provider_id_reconciles_by_callback_data(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING, with_provider_id=False)
    message_id = seeded.message_ids[0]
    item = status_item("wamid.lost", "sent", later(1), message_id=message_id)
    await _post(client, webhook_body(statuses=[item]))
    await _settle(app)
    assert message(db, message_id).provider_message_id == "wamid.lost"


async def test_missing_signature_is_401(client: Client, app: FastAPI, db: Database) -> None:
    seeded = seed_messages(db)
    raw, _ = signed(webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    response = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    await _settle(app)
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_signature_with_another_secret_is_403(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    body = webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")])
    assert (await _post(client, body, secret="not-our-secret")).status_code == 403
    await _settle(app)
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_signature_over_a_different_body_is_403(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    _, headers = signed(webhook_body(statuses=[]))
    tampered = json.dumps(webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    response = await client.post(URL, content=tampered.encode(), headers=headers)
    assert response.status_code == 403
    await _settle(app)
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_a_non_ascii_signature_is_403_not_a_crash(client: Client) -> None:
    raw, _ = signed(webhook_body(statuses=[]))
    headers = {SIGNATURE_HEADER.encode(): "sha256=caf\u00e9".encode("latin-1")}
    assert (await client.post(URL, content=raw, headers=headers)).status_code == 403


async def test_malformed_json_with_a_valid_signature_is_400(client: Client) -> None:
    assert (await _post(client, b'{"entry": [')).status_code == 400


async def test_a_json_array_with_a_valid_signature_is_400(client: Client) -> None:
    assert (await _post(client, b"[1, 2]")).status_code == 400


async def test_a_body_declared_over_the_limit_is_413(db: Database) -> None:
    app = create_app(_settings(db, CAMPAIGNS_WEBHOOK_MAX_BYTES=1000), db)
    raw, headers = signed(b'{"entry": []}' + b" " * 1000)
    async with _running(app) as client:
        response = await client.post(URL, content=raw, headers=headers)
    assert response.status_code == 413


async def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(db: Database) -> None:
    app = create_app(_settings(db, CAMPAIGNS_WEBHOOK_MAX_BYTES=1000), db)
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for _ in range(100):
            sent.append(1)
            yield b" " * 500

    async with _running(app) as client:
        response = await client.post(URL, content=chunks(), headers=signed(b"{}")[1])
    assert response.status_code == 413
    assert len(sent) < 100


async def test_a_body_at_the_limit_is_received(db: Database) -> None:
    app = create_app(_settings(db, CAMPAIGNS_WEBHOOK_MAX_BYTES=1000), db)
    raw, headers = signed(b'{"entry": []}'.ljust(1000))
    async with _running(app) as client:
        assert (await client.post(URL, content=raw, headers=headers)).status_code == 200


async def test_unknown_fields_and_statuses_are_ignored(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    pid = str(seeded.provider_ids[0])
    body = webhook_body(statuses=[status_item(pid, "deleted"), status_item(pid, "read")])
    body["entry"][0]["changes"][0]["value"]["brand_new_field"] = {"nested": [1, 2]}
    body["entry"].append({"id": "other", "changes": [{"field": "account_update", "value": {}}]})
    body["surprise"] = True
    response = await _post(client, body)
    assert response.status_code == 200
    await _settle(app)
    assert message(db, seeded.message_ids[0]).status == "read"


async def test_a_stop_reply_opts_the_plus_prefixed_number_out(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ)
    phone = message(db, seeded.message_ids[0]).phone_e164
    body = webhook_body(messages=[reply_item(phone.lstrip("+"), "STOP", later(5))])
    assert (await _post(client, body)).status_code == 200
    await _settle(app)
    assert opted_out_phones(db) == {phone}
    assert message(db, seeded.message_ids[0]).status == "responded"


async def test_a_reply_with_the_campaigns_own_stop_keyword_opts_the_number_out(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ, policy={"stop_keywords": ["BAJA"]})
    phone = message(db, seeded.message_ids[0]).phone_e164
    body = webhook_body(messages=[reply_item(phone.lstrip("+"), "Baja", later(5))])
    assert (await _post(client, body)).status_code == 200
    await _settle(app)
    assert opted_out_phones(db) == {phone}


# -------------------------------------------------------------- durability and batching


@pytest.mark.usefixtures("applier_down")
async def test_webhooks_answered_200_before_a_crash_are_applied_on_restart(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def dies(self: WebhookIngest) -> None:  # applies nothing more at shutdown
        await asyncio.sleep(0)

    monkeypatch.setattr(WebhookIngest, "settle", dies)
    seeded = seed_messages(db, 3)
    first = create_app(_settings(db), db)
    async with _running(first) as client:
        for pid in seeded.provider_ids:
            body = webhook_body(statuses=[status_item(str(pid), "delivered", later(1))])
            assert (await _post(client, body)).status_code == 200
    assert {message(db, m).status for m in seeded.message_ids} == {"sent"}

    monkeypatch.undo()  # the restarted process's applier runs
    restarted = create_app(_settings(db), db)
    async with _running(restarted):
        await _settle(restarted)
    assert {message(db, m).status for m in seeded.message_ids} == {"delivered"}


@pytest.mark.usefixtures("applier_down")
async def test_out_of_order_deliveries_in_one_batch_end_at_the_furthest_status(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    pid = str(seeded.provider_ids[0])
    for status, minute in (("read", 3), ("sent", 1), ("delivered", 2)):
        await _post(client, webhook_body(statuses=[status_item(pid, status, later(minute))]))
    await _settle(app)
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at, row.read_at) == ("read", later(2), later(3))


async def test_a_late_status_in_a_later_batch_does_not_move_a_message_back(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    pid = str(seeded.provider_ids[0])
    await _post(client, webhook_body(statuses=[status_item(pid, "read", later(3))]))
    await _settle(app)
    await _post(client, webhook_body(statuses=[status_item(pid, "delivered", later(2))]))
    await _settle(app)
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.read_at) == ("read", later(3))


@pytest.mark.usefixtures("applier_down")
async def test_a_retried_delivery_is_applied_once(
    client: Client, app: FastAPI, db: Database
) -> None:
    seeded = seed_messages(db)
    body = webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "delivered", later(1))])
    for _ in range(3):  # Meta's retries of one delivery
        assert (await _post(client, body)).status_code == 200
    await _settle(app)
    await _post(client, body)  # and one more, after it was applied
    await _settle(app)
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at) == ("delivered", later(1))


@pytest.mark.usefixtures("applier_down")
async def test_statuses_of_many_posts_are_applied_in_one_batch(
    client: Client, app: FastAPI, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = seed_messages(db, 500)
    batches: list[int] = []
    apply = status_updates.apply_statuses

    def counting(session: Any, updates: Sequence[Any]) -> Any:
        batches.append(len(updates))
        return apply(session, updates)

    monkeypatch.setattr(status_updates, "apply_statuses", counting)
    for start in range(0, 500, 100):
        pids = seeded.provider_ids[start : start + 100]
        statuses = [status_item(str(pid), "delivered", later(1)) for pid in pids]
        await _post(client, webhook_body(statuses=statuses))
    await _settle(app)
    assert batches == [500]
    assert {message(db, m).status for m in seeded.message_ids} == {"delivered"}


async def test_changes_go_to_the_applier_registered_for_their_field(
    client: Client, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict[str, Any]] = []

    def quality_updates(session: Any, settings: Settings, batch: Sequence[Change]) -> None:
        received.extend(change.value for change in batch)

    appliers = webhook_appliers.CHANGE_APPLIERS | {"phone_number_quality_update": quality_updates}
    monkeypatch.setattr(webhook_appliers, "CHANGE_APPLIERS", appliers)
    value = {"display_phone_number": "12025550100", "event": "FLAGGED"}
    body = {"entry": [{"changes": [{"field": "phone_number_quality_update", "value": value}]}]}
    await _post(client, body)
    await _settle(app)
    assert received == [value]


@pytest.mark.usefixtures("applier_down")
async def test_a_payload_that_cannot_be_applied_is_set_aside_and_the_others_applied(
    client: Client, app: FastAPI, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(session: Any, settings: Settings, batch: Sequence[Change]) -> None:
        raise ValueError("a bug in this applier")

    monkeypatch.setattr(
        webhook_appliers, "CHANGE_APPLIERS", webhook_appliers.CHANGE_APPLIERS | {"broken": broken}
    )
    seeded = seed_messages(db)
    await _post(client, {"entry": [{"changes": [{"field": "broken", "value": {}}]}]})
    await _post(client, webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    await _settle(app)
    assert message(db, seeded.message_ids[0]).status == "read"
    health = (await client.get("/healthz")).json()
    assert health["webhooks"] | {"oldest_seconds": 0} == {
        "waiting": 0,
        "oldest_seconds": 0,
        "dead_letters": 1,
    }


# ------------------------------------------------------------------- health and metrics


async def test_healthz_answers_ok_with_an_empty_backlog(client: Client) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "webhooks": {"waiting": 0, "oldest_seconds": 0.0, "dead_letters": 0}},
    )


@pytest.mark.usefixtures("applier_down")
@pytest.mark.usefixtures("applier_down")
async def test_healthz_and_metrics_show_webhooks_waiting(client: Client, app: FastAPI) -> None:
    for _ in range(2):
        await _post(client, webhook_body(statuses=[]))
    health = (await client.get("/healthz")).json()["webhooks"]
    assert health["waiting"] == 2
    assert health["oldest_seconds"] >= 0
    await app.state.webhook_ingest.refresh_backlog()
    metrics = (await client.get("/metrics")).text
    assert "campaigns_webhook_backlog 2.0" in metrics


async def test_the_webhook_post_skips_the_app_middleware_and_other_requests_do_not(
    app: FastAPI, db: Database
) -> None:
    seen: list[str] = []

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    seeded = seed_messages(db)
    async with _running(app) as client:
        body = webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")])
        assert (await _post(client, body)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
    assert seen == ["GET /healthz"]


async def test_the_openapi_document_describes_the_webhook_post(client: Client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths[URL]) == {"get", "post"}
    assert {"200", "403", "413"} <= set(paths[URL]["post"]["responses"])


async def test_the_access_log_leaves_out_stored_webhooks_and_keeps_the_rest(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(db), db)
    app.access_log = True  # as `campaigns api` serves it
    seeded = seed_messages(db)
    body = webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")])
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        async with _running(app) as client:
            assert (await _post(client, body)).status_code == 200
            assert (await _post(client, body, secret="another")).status_code == 403
            assert (await client.get("/healthz?x=1")).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert [line.split('"')[1:] for line in lines] == [
        [f"POST {URL} HTTP/1.1", " 403"],
        ["GET /healthz?x=1 HTTP/1.1", " 200"],
    ]
