"""API keys bound to accounts and roles on the REST API, onboarding through REST (accounts, the
WhatsApp connection, numbers, keys), and the throttling of failed authentications (SPEC §9,
issue 16 item 2)."""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.api_helpers import api_client, make_settings, seed
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.api.throttle import FailedAuthThrottle
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.store import accounts, api_keys, connections
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.secrets import SecretBox, SecretKeyError, generate_secret_key
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider

BOOTSTRAP = "bootstrap-admin-key"
TOKEN = "EAAG-never-show-me"
SECRET_KEY = generate_secret_key()


@dataclass
class Api:
    client: httpx.AsyncClient
    db: Database

    def auth(self, key: str, account: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {key}"}
        return headers | ({"X-Account": account} if account else {})


@pytest.fixture
async def api(db: Database) -> AsyncIterator[Api]:
    seed(db)  # the default account, its sender and templates
    settings = make_settings(
        db,
        CAMPAIGNS_API_KEYS=BOOTSTRAP,
        CAMPAIGNS_SECRET_KEY=SECRET_KEY,
        CAMPAIGNS_AUTH_MAX_FAILURES="3",
    )
    providers = AccountProviders(settings, db, shared=SandboxProvider(SandboxEmulator()))
    async with api_client(db, settings, providers=providers) as client:
        yield Api(client, db)


async def _key(api: Api, role: Role, account: str = "default") -> str:
    response = await api.client.post(
        "/keys", json={"account": account, "role": role.value}, headers=api.auth(BOOTSTRAP)
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


# ------------------------------------------------------------------------------- roles


async def test_an_operator_key_acts_on_its_own_account(api: Api) -> None:
    accounts.create_account(api.db, "acme", "Acme")
    key = await _key(api, Role.OPERATOR, "acme")
    body = (await api.client.get("/credits", headers=api.auth(key))).json()
    assert body["account_id"] == "acme"


async def test_a_viewer_key_reads_but_may_not_write(api: Api) -> None:
    key = await _key(api, Role.VIEWER)
    assert (await api.client.get("/campaigns", headers=api.auth(key))).status_code == 200
    response = await api.client.post("/templates/sync", headers=api.auth(key))
    assert response.status_code == 403
    assert response.json()["detail"] == "a viewer API key may only read"


async def test_only_an_admin_adds_credits(api: Api) -> None:
    operator = await _key(api, Role.OPERATOR)
    refused = await api.client.post("/credits", json={"amount": 5}, headers=api.auth(operator))
    assert refused.status_code == 403
    allowed = await api.client.post("/credits", json={"amount": 5}, headers=api.auth(BOOTSTRAP))
    assert allowed.status_code == 200


async def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    key = await _key(api, Role.OPERATOR)
    (stored,) = api_keys.list_keys(api.db)
    assert (
        await api.client.delete(f"/keys/{stored.id}", headers=api.auth(BOOTSTRAP))
    ).status_code == 204
    response = await api.client.get("/campaigns", headers=api.auth(key))
    assert response.status_code == 401


async def test_listing_keys_never_shows_a_secret(api: Api) -> None:
    key = await _key(api, Role.VIEWER)
    listed = await api.client.get("/keys", headers=api.auth(BOOTSTRAP))
    assert listed.status_code == 200
    assert key not in listed.text and key.split("_", 2)[2] not in listed.text


async def test_stored_keys_close_an_api_that_had_no_bootstrap_key(db: Database) -> None:
    seed(db)
    api_keys.create_key(db, "default", Role.ADMIN)
    async with api_client(db, make_settings(db)) as client:  # CAMPAIGNS_API_KEYS empty
        assert (await client.get("/campaigns")).status_code == 401


# ---------------------------------------------------------------------------- onboarding


async def test_an_account_goes_live_through_rest(api: Api) -> None:
    admin = api.auth(BOOTSTRAP)
    created = await api.client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    assert created.status_code == 201
    connected = await api.client.put(
        "/accounts/acme/connection",
        json={"waba_id": "sandbox", "access_token": TOKEN},
        headers=admin,
    )
    assert connected.status_code == 200, connected.text
    assert connected.json()["connected"] is True
    assert TOKEN not in connected.text
    acme = api.auth(BOOTSTRAP, "acme")
    sender = await api.client.post(
        "/senders", json={"phone_number_id": "sandbox-sender-high"}, headers=acme
    )
    assert sender.status_code == 200, sender.text
    assert (sender.json()["rate_per_second"], sender.json()["throughput_level"]) == (1000, "HIGH")
    synced = await api.client.post("/templates/sync", headers=acme)
    assert synced.status_code == 200 and synced.json()["synced"] >= 4
    credentials = connections.get_credentials(api.db, SecretBox(SECRET_KEY), "acme")
    assert credentials is not None and credentials.access_token == TOKEN


async def test_a_duplicate_account_is_409(api: Api) -> None:
    admin = api.auth(BOOTSTRAP)
    body = {"id": "acme", "name": "Acme"}
    assert (await api.client.post("/accounts", json=body, headers=admin)).status_code == 201
    again = await api.client.post("/accounts", json=body, headers=admin)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]


async def test_an_unknown_number_shows_metas_code_and_stores_nothing(api: Api) -> None:
    response = await api.client.post(
        "/senders", json={"phone_number_id": "no-such-number"}, headers=api.auth(BOOTSTRAP)
    )
    assert response.status_code == 502
    assert "(code 100)" in response.json()["detail"]
    listed = (await api.client.get("/senders", headers=api.auth(BOOTSTRAP))).json()
    assert "no-such-number" not in {s["phone_number_id"] for s in listed}


async def test_a_token_never_reaches_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = api.auth(BOOTSTRAP)
    await api.client.post("/accounts", json={"id": "acme", "name": "Acme"}, headers=admin)
    await api.client.put(
        "/accounts/acme/connection",
        json={"waba_id": "sandbox", "access_token": TOKEN},
        headers=admin,
    )
    await api.client.put(  # a refused one (malformed) too
        "/accounts/acme/connection", json={"waba_id": "", "access_token": TOKEN}, headers=admin
    )
    assert TOKEN not in caplog.text
    assert BOOTSTRAP not in caplog.text


def test_a_stored_token_without_the_secret_key_stops_the_api_at_start_up(db: Database) -> None:
    seed(db)
    box = SecretBox(SECRET_KEY)
    connections.connect_account(db, box, "default", waba_id="w", access_token=TOKEN)
    with pytest.raises(SecretKeyError, match="CAMPAIGNS_SECRET_KEY is not set"):
        create_app(make_settings(db), db)
    wrong = make_settings(db, CAMPAIGNS_SECRET_KEY=generate_secret_key())
    with pytest.raises(SecretKeyError, match="cannot decrypt the access token of account default"):
        create_app(wrong, db)


# ----------------------------------------------------------------------------- throttle


async def test_repeated_failed_authentications_answer_429_with_retry_after(api: Api) -> None:
    for _ in range(3):
        assert (await api.client.get("/campaigns", headers=api.auth("guess"))).status_code == 401
    throttled = await api.client.get("/campaigns", headers=api.auth(BOOTSTRAP))
    assert throttled.status_code == 429  # from that address, even a good key waits
    assert int(throttled.headers["retry-after"]) > 0


async def test_guesses_at_one_key_id_are_throttled_from_any_address(api: Api) -> None:
    key = await _key(api, Role.VIEWER)
    key_id = key.split("_")[1]
    throttle: FailedAuthThrottle = api.client._transport.app.state.auth_throttle  # type: ignore[attr-defined]
    for _ in range(3):  # failures against that key id, from elsewhere
        throttle.record_failure([f"key:{key_id}"])
    response = await api.client.get("/campaigns", headers=api.auth(key))
    assert response.status_code == 429


def test_the_throttle_forgets_failures_after_its_window() -> None:
    now = [0.0]
    throttle = FailedAuthThrottle(2, 60.0, clock=lambda: now[0])
    throttle.record_failure(["address:1.2.3.4"])
    throttle.record_failure(["address:1.2.3.4"])
    assert throttle.retry_after(["address:1.2.3.4"]) == 60
    assert throttle.retry_after(["address:5.6.7.8"]) is None
    now[0] = 60.5
    assert throttle.retry_after(["address:1.2.3.4"]) is None


def test_the_throttle_keeps_a_bounded_number_of_addresses() -> None:
    throttle = FailedAuthThrottle(1, 60.0, max_tracked=10)
    for i in range(100):
        throttle.record_failure([f"address:{i}"])
    assert throttle.retry_after(["address:0"]) is None  # the oldest was forgotten
    assert throttle.retry_after(["address:99"]) is not None


async def test_a_throttled_request_logs_a_warning(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="whatsapp_campaigns.api.auth")
    for _ in range(4):
        await api.client.get("/campaigns", headers=api.auth("guess"))
    assert any("429 GET /campaigns" in r.getMessage() for r in caplog.records)
