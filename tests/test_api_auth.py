"""Bootstrap API keys (`CAMPAIGNS_API_KEYS`): required on the REST routes when configured,
never on /healthz, /metrics, /webhooks/*, /docs and /openapi.json; an open API when no key is
configured anywhere. Keys bound to accounts and roles: tests/test_api_keys.py."""

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api_helpers import API_KEY, api_client, make_settings, seed
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.api.auth import identify
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.store.db import Database

OTHER_KEY = "test-key-2"


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    seed(db)
    settings = make_settings(db, CAMPAIGNS_API_KEYS=f"{API_KEY}, {OTHER_KEY}")
    async with api_client(db, settings) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_route_without_a_key_is_401_with_www_authenticate(api: httpx.AsyncClient) -> None:
    response = await api.get("/campaigns")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing bearer API key"}


async def test_a_wrong_key_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/campaigns", headers=_bearer("guess"))
    assert response.status_code == 401
    assert response.json() == {"detail": "unknown or revoked API key"}


async def test_a_basic_authorization_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/credits", headers={"Authorization": f"Basic {API_KEY}"})
    assert response.status_code == 401


async def test_a_known_key_is_let_in(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns", headers=_bearer(API_KEY))).status_code == 200


async def test_every_configured_key_is_let_in(api: httpx.AsyncClient) -> None:
    assert (await api.get("/senders", headers=_bearer(OTHER_KEY))).status_code == 200


async def test_a_refused_key_is_checked_before_the_body(api: httpx.AsyncClient) -> None:
    response = await api.post("/credits", json={"amount": -1})
    assert response.status_code == 401


async def test_a_refused_key_logs_one_warning(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="whatsapp_campaigns.api.auth")
    await api.get("/audiences", headers=_bearer("guess"))
    (record,) = [r for r in caplog.records if r.name == "whatsapp_campaigns.api.auth"]
    assert "401 GET /audiences" in record.getMessage()
    assert "guess" not in record.getMessage()  # never log what was tried


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/docs", "/openapi.json"])
async def test_operations_and_docs_need_no_key(api: httpx.AsyncClient, path: str) -> None:
    assert (await api.get(path)).status_code == 200


async def test_webhooks_need_no_bearer_key(api: httpx.AsyncClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}
    response = await api.get("/webhooks/whatsapp", params=params)
    assert response.status_code == 403  # their own check answered, not the API key's 401


async def test_openapi_declares_the_bearer_scheme(api: httpx.AsyncClient) -> None:
    schemes = (await api.get("/openapi.json")).json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


async def test_without_configured_keys_the_api_is_open(db: Database) -> None:
    seed(db)
    async with api_client(db) as api:
        assert (await api.get("/campaigns")).status_code == 200


def test_an_open_api_warns_at_startup(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="whatsapp_campaigns.api.auth")
    create_app(make_settings(db), db)
    (record,) = [r for r in caplog.records if r.name == "whatsapp_campaigns.api.auth"]
    assert "CAMPAIGNS_API_KEYS is empty" in record.getMessage()


def test_an_api_with_keys_does_not_warn(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="whatsapp_campaigns.api.auth")
    create_app(make_settings(db, CAMPAIGNS_API_KEYS=API_KEY), db)
    assert not [r for r in caplog.records if r.name == "whatsapp_campaigns.api.auth"]


def test_a_bootstrap_key_is_an_admin_of_the_default_account(db: Database) -> None:
    settings = make_settings(db, CAMPAIGNS_API_KEYS=f"{API_KEY},{OTHER_KEY}")
    principal = identify(settings, db, OTHER_KEY)
    assert principal is not None
    assert (principal.account, principal.role) == (settings.default_account, Role.ADMIN)
    assert OTHER_KEY not in principal.key_id  # a fingerprint names it, never the key


@pytest.mark.parametrize("guess", ["test-key", "test-key-1x", "", "TEST-KEY-1"])
def test_a_bootstrap_key_matches_exactly(db: Database, guess: str) -> None:
    settings = make_settings(db, CAMPAIGNS_API_KEYS=API_KEY)
    assert identify(settings, db, guess) is None
