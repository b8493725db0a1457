"""`/webhooks/whatsapp` through the ASGI app: handshake, signature check, batch application."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

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
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import status_updates
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.signatures import SIGNATURE_HEADER

URL = "/webhooks/whatsapp"
Client = httpx.AsyncClient


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    settings = Settings(
        CAMPAIGNS_DATABASE_URL=db.url,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
    )
    transport = httpx.ASGITransport(app=create_app(settings, db))
    async with Client(transport=transport, base_url="http://receiver") as test_client:
        yield test_client


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


async def test_signed_statuses_are_applied(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    body = webhook_body(statuses=[status_item(pid, "delivered", later(1))])
    response = await _post(client, body)
    assert response.status_code == 200
    assert response.json()["statuses"]["applied"] == 1
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.delivered_at) == ("delivered", later(1))


async def test_a_failed_status_keeps_the_whatsapp_error(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    pid = seeded.provider_ids[0]
    assert pid
    item = status_item(pid, "failed", later(1), error=(131026, "Message undeliverable"))
    await _post(client, webhook_body(statuses=[item]))
    row = message(db, seeded.message_ids[0])
    assert (row.status, row.error_code, row.error_title) == (
        "failed",
        131026,
        "Message undeliverable",
    )


async def test_a_status_for_a_lost_provider_id_reconciles_by_callback_data(
    client: Client, db: Database
) -> None:
    seeded = seed_messages(db, status=MessageStatus.SENDING, with_provider_id=False)
    message_id = seeded.message_ids[0]
    item = status_item("wamid.lost", "sent", later(1), message_id=message_id)
    await _post(client, webhook_body(statuses=[item]))
    assert message(db, message_id).provider_message_id == "wamid.lost"


async def test_missing_signature_is_401(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    raw, _ = signed(webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    response = await client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_signature_with_another_secret_is_403(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    body = webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")])
    assert (await _post(client, body, secret="not-our-secret")).status_code == 403
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_signature_over_a_different_body_is_403(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    _, headers = signed(webhook_body(statuses=[]))
    tampered = json.dumps(webhook_body(statuses=[status_item(str(seeded.provider_ids[0]), "read")]))
    response = await client.post(URL, content=tampered.encode(), headers=headers)
    assert response.status_code == 403
    assert message(db, seeded.message_ids[0]).status == "sent"


async def test_a_non_ascii_signature_is_403_not_a_crash(client: Client) -> None:
    raw, _ = signed(webhook_body(statuses=[]))
    headers = {SIGNATURE_HEADER.encode(): "sha256=caf\u00e9".encode("latin-1")}
    assert (await client.post(URL, content=raw, headers=headers)).status_code == 403


async def test_malformed_json_with_a_valid_signature_is_400(client: Client) -> None:
    assert (await _post(client, b'{"entry": [')).status_code == 400


async def test_unknown_fields_and_statuses_are_ignored(client: Client, db: Database) -> None:
    seeded = seed_messages(db)
    pid = str(seeded.provider_ids[0])
    body = webhook_body(statuses=[status_item(pid, "deleted"), status_item(pid, "read")])
    body["entry"][0]["changes"][0]["value"]["brand_new_field"] = {"nested": [1, 2]}
    body["entry"].append({"id": "other", "changes": [{"field": "account_update", "value": {}}]})
    body["surprise"] = True
    response = await _post(client, body)
    assert response.status_code == 200
    assert response.json()["skipped"] == 1
    assert message(db, seeded.message_ids[0]).status == "read"


async def test_a_stop_reply_opts_the_plus_prefixed_number_out(client: Client, db: Database) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ)
    phone = message(db, seeded.message_ids[0]).phone_e164
    body = webhook_body(messages=[reply_item(phone.lstrip("+"), "STOP", later(5))])
    response = await _post(client, body)
    assert response.json()["replies"] == {
        "applied": 1,
        "ignored_stale": 0,
        "unknown": 0,
        "opted_out": 1,
    }
    assert opted_out_phones(db) == {phone}
    assert message(db, seeded.message_ids[0]).status == "responded"


async def test_a_reply_with_the_campaigns_own_stop_keyword_opts_the_number_out(
    client: Client, db: Database
) -> None:
    seeded = seed_messages(db, status=MessageStatus.READ, policy={"stop_keywords": ["BAJA"]})
    phone = message(db, seeded.message_ids[0]).phone_e164
    body = webhook_body(messages=[reply_item(phone.lstrip("+"), "Baja", later(5))])
    response = await _post(client, body)
    assert response.json()["replies"]["opted_out"] == 1
    assert opted_out_phones(db) == {phone}


async def test_500_statuses_in_one_post_are_applied_in_one_batch(
    client: Client, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = seed_messages(db, 500)
    batches: list[int] = []
    apply = status_updates.apply_status_updates

    def counting(database: Database, updates: Any, **kwargs: Any) -> Any:
        batches.append(len(updates))
        return apply(database, updates, **kwargs)

    monkeypatch.setattr(status_updates, "apply_status_updates", counting)
    statuses = [status_item(str(pid), "delivered", later(1)) for pid in seeded.provider_ids]
    response = await _post(client, webhook_body(statuses=statuses))
    assert response.json()["statuses"]["applied"] == 500
    assert batches == [500]
    assert {message(db, m).status for m in seeded.message_ids} == {"delivered"}


async def test_healthz_answers_ok_when_the_store_does(client: Client) -> None:
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
