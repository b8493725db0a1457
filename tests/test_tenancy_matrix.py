"""Tenancy, generated from the app's route table (SPEC §9): for every REST and dashboard route,
the keys of account `acme` (admin, operator, viewer) meet objects of account `beta`.

- another account's campaign, audience or number answers 404 (its existence is not told);
- a viewer's write answers 403; admin-only routes answer 403 to operators and viewers;
- lists show only the key's own account;
- no key, or a revoked key, answers 401 (the dashboard sends to its sign-in page).

Every route must be in ROUTES below: a route added later fails `test_every_route_is_in_the_
matrix` until someone says what tenancy it has, so it cannot skip the check.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api_helpers import served
from tests.dashboard_helpers import csrf_token
from tests.store_helpers import seed_account, seed_audience, seed_campaign
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.tenancy import Role
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.store import api_keys, catalog
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.whatsapp.connections import AccountProviders
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxSender
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider

OWN, OTHER = "acme", "beta"
ROLES = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


@dataclass(frozen=True)
class Tenancy:
    """How a route treats acme's keys; `body`: JSON (or form/files) to send."""

    kind: str  # own-list | foreign-read | foreign-write | own-create | admin | public
    body: dict[str, Any] | None = None
    files: bool = False
    dashboard: bool = False


# Every route of the app, by (method, path). Path parameters are filled with beta's objects.
ROUTES: dict[tuple[str, str], Tenancy] = {
    ("GET", "/webhooks/whatsapp"): Tenancy("public"),
    ("POST", "/webhooks/whatsapp"): Tenancy("public"),
    ("GET", "/campaigns"): Tenancy("own-list"),
    ("POST", "/campaigns"): Tenancy(
        "own-create",
        {"name": "x", "template_name": "spring_sale", "sender_phone_number_id": "beta-sender-1"},
    ),
    ("GET", "/campaigns/{campaign_id}"): Tenancy("foreign-read"),
    ("PUT", "/campaigns/{campaign_id}"): Tenancy(
        "foreign-write",
        {"name": "x", "template_name": "spring_sale", "sender_phone_number_id": "beta-sender-1"},
    ),
    ("DELETE", "/campaigns/{campaign_id}"): Tenancy("foreign-write"),
    ("POST", "/campaigns/{campaign_id}/schedule"): Tenancy("foreign-write", {}),
    ("POST", "/campaigns/{campaign_id}/launch"): Tenancy("foreign-write"),
    ("POST", "/campaigns/{campaign_id}/pause"): Tenancy("foreign-write", {}),
    ("POST", "/campaigns/{campaign_id}/resume"): Tenancy("foreign-write"),
    ("POST", "/campaigns/{campaign_id}/cancel"): Tenancy("foreign-write", {}),
    ("POST", "/campaigns/{campaign_id}/reschedule"): Tenancy(
        "foreign-write", {"send_at": "2040-01-01T00:00:00+00:00"}
    ),
    ("POST", "/campaigns/{campaign_id}/retry-failed"): Tenancy("foreign-write"),
    ("POST", "/campaigns/{campaign_id}/duplicate"): Tenancy("foreign-write"),
    ("POST", "/campaigns/{campaign_id}/test-send"): Tenancy(
        "foreign-write", {"to": "+12025550123"}
    ),
    ("GET", "/campaigns/{campaign_id}/progress"): Tenancy("foreign-read"),
    ("GET", "/campaigns/{campaign_id}/report.csv"): Tenancy("foreign-read"),
    ("POST", "/audiences"): Tenancy("own-create", files=True),
    ("GET", "/audiences"): Tenancy("own-list"),
    ("GET", "/audiences/{audience_id}"): Tenancy("foreign-read"),
    ("GET", "/templates"): Tenancy("own-list"),
    ("POST", "/templates/sync"): Tenancy("own-create"),
    ("GET", "/senders"): Tenancy("own-list"),
    ("POST", "/senders"): Tenancy("own-create", {"phone_number_id": "beta-sender-1"}),
    ("POST", "/senders/{phone_number_id}/sync"): Tenancy("foreign-write"),
    ("DELETE", "/senders/{phone_number_id}"): Tenancy("foreign-write"),
    ("GET", "/credits"): Tenancy("own-list"),
    ("POST", "/credits"): Tenancy("admin", {"amount": 5}),
    ("POST", "/accounts"): Tenancy("admin", {"id": "gamma", "name": "Gamma"}),
    ("GET", "/accounts"): Tenancy("admin"),
    ("GET", "/accounts/{account_id}"): Tenancy("admin"),
    ("PUT", "/accounts/{account_id}/connection"): Tenancy(
        "admin", {"waba_id": "waba-x", "access_token": "t"}
    ),
    ("POST", "/keys"): Tenancy("admin", {"role": "viewer"}),
    ("GET", "/keys"): Tenancy("admin"),
    ("DELETE", "/keys/{key_id}"): Tenancy("admin"),
    ("GET", "/dashboard"): Tenancy("public", dashboard=True),
    ("GET", "/dashboard/login"): Tenancy("public", dashboard=True),
    ("POST", "/dashboard/login"): Tenancy("public", dashboard=True),
    ("POST", "/dashboard/logout"): Tenancy("public", dashboard=True),
    ("GET", "/dashboard/"): Tenancy("own-list", dashboard=True),
    ("GET", "/dashboard/campaigns/new"): Tenancy("own-create", dashboard=True),
    ("POST", "/dashboard/campaigns/new"): Tenancy(
        "own-create",
        {"name": "x", "template": "spring_sale|en", "sender": "beta-sender-1"},
        dashboard=True,
    ),
    ("GET", "/dashboard/campaigns/{campaign_id}/edit"): Tenancy("foreign-write", dashboard=True),
    ("POST", "/dashboard/campaigns/{campaign_id}/edit"): Tenancy(
        "foreign-write", {"name": "x"}, dashboard=True
    ),
    ("GET", "/dashboard/campaigns/{campaign_id}"): Tenancy("foreign-read", dashboard=True),
    ("GET", "/dashboard/campaigns/{campaign_id}/live"): Tenancy("foreign-read", dashboard=True),
    ("POST", "/dashboard/campaigns/{campaign_id}/actions/{action}"): Tenancy(
        "foreign-write", {}, dashboard=True
    ),
    ("GET", "/dashboard/campaigns/{campaign_id}/report"): Tenancy("foreign-read", dashboard=True),
    ("GET", "/dashboard/campaigns/{campaign_id}/report.csv"): Tenancy(
        "foreign-read", dashboard=True
    ),
}
# Served without our keys on purpose: operations and documentation.
UNGUARDED = {
    "/",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, including routers it includes."""
    table: set[tuple[str, str]] = set()
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for item in contexts() if callable(contexts) else [route]:
            path, methods = getattr(item, "path", ""), getattr(item, "methods", None) or set()
            if path in UNGUARDED or path.startswith("/dashboard/static"):
                continue
            table.update((method, path) for method in methods if method != "HEAD")
    return table


@dataclass
class World:
    db: Database
    app: FastAPI
    keys: dict[Role, str] = field(default_factory=dict)
    revoked: str = ""
    params: dict[str, str] = field(default_factory=dict)
    other_campaign: str = ""


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    for account in (OWN, OTHER):
        seed_account(db, account, balance=100)
        catalog.upsert_templates(db, account, [Template(name="spring_sale", variables=["name"])])
    other_audience = seed_audience(db, OTHER)
    other_campaign = seed_campaign(db, OTHER, audience_id=other_audience)
    other_key = api_keys.create_key(db, OTHER, Role.VIEWER)
    keys = {role: api_keys.create_key(db, OWN, role).key for role in ROLES}
    revoked = api_keys.create_key(db, OWN, Role.ADMIN)
    api_keys.revoke_key(db, revoked.id)
    settings = Settings(CAMPAIGNS_DATABASE_URL=db.url, CAMPAIGNS_API_KEYS="")
    emulator = SandboxEmulator(
        senders=[SandboxSender(f"{a}-sender-1", "+12025550190") for a in (OWN, OTHER)]
    )
    providers = AccountProviders(settings, db, shared=SandboxProvider(emulator))
    app = create_app(settings, db, providers=providers)
    yield World(
        db=db,
        app=app,
        keys=keys,
        revoked=revoked.key,
        other_campaign=other_campaign,
        params={
            "campaign_id": other_campaign,
            "audience_id": other_audience,
            "phone_number_id": f"{OTHER}-sender-1",
            "account_id": OTHER,
            "key_id": other_key.id,
            "action": "pause",
        },
    )


def _url(path: str, params: dict[str, str]) -> str:
    return path.format(**{name: params[name] for name in params if "{" + name + "}" in path})


async def _rest(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    tenancy: Tenancy,
    key: str | None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if tenancy.files:
        files = {"file": ("a.csv", b"phone,name\n+12025550111,Ana\n", "text/csv")}
        return await client.request(method, url, headers=headers, files=files, data={"name": "a"})
    return await client.request(method, url, headers=headers, json=tenancy.body)


async def _dashboard(
    client: httpx.AsyncClient, method: str, url: str, tenancy: Tenancy, key: str
) -> httpx.Response:
    """Signed in with `key`, the request as the browser would make it (CSRF token included)."""
    login = await client.post("/dashboard/login", data={"api_key": key})
    assert login.status_code == 303, login.text
    if method == "GET":
        return await client.get(url)
    home = await client.get("/dashboard/")
    data = {"csrf_token": csrf_token(home.text), **(tenancy.body or {})}
    return await client.post(url, data=data)


def _expected(tenancy: Tenancy, method: str, role: Role) -> set[int]:
    """The statuses acme's `role` key may get; None of them is a 2xx on beta's objects."""
    # The editor's forms are GETs, but they exist to change something: a viewer gets 403 too.
    writes = method not in ("GET", "HEAD") or tenancy.kind in ("own-create", "foreign-write")
    if tenancy.kind == "admin":
        return {200, 201, 204, 404, 409, 422, 502} if role is Role.ADMIN else {403}
    if writes and role is Role.VIEWER:
        return {403}
    if tenancy.kind in ("foreign-read", "foreign-write"):
        return {404}
    if tenancy.kind == "own-create":
        # Created in acme's own account, or refused because the body names beta's number.
        return {200, 201, 303, 409, 422}
    return {200}


MATRIX = sorted(k for k, v in ROUTES.items() if v.kind != "public")


def test_every_route_is_in_the_matrix(world: World) -> None:
    served = route_table(world.app)
    missing = served - set(ROUTES)
    assert not missing, f"add these routes to ROUTES with their tenancy: {sorted(missing)}"
    assert not set(ROUTES) - served, "ROUTES names routes the app no longer serves"


@pytest.mark.parametrize(("method", "path"), MATRIX, ids=[f"{m} {p}" for m, p in MATRIX])
async def test_acme_keys_never_reach_beta(world: World, method: str, path: str) -> None:
    tenancy = ROUTES[(method, path)]
    url = _url(path, world.params)
    for role in ROLES:
        async with served(world.app) as client:
            if tenancy.dashboard:
                response = await _dashboard(client, method, url, tenancy, world.keys[role])
            else:
                response = await _rest(client, method, url, tenancy, world.keys[role])
        assert response.status_code in _expected(tenancy, method, role), (
            f"{role.value}: {method} {url} -> {response.status_code} {response.text[:300]}"
        )
        if tenancy.kind == "own-list":
            assert world.other_campaign not in response.text
            assert f"{OTHER}-sender-1" not in response.text


@pytest.mark.parametrize(("method", "path"), MATRIX, ids=[f"{m} {p}" for m, p in MATRIX])
async def test_no_key_or_a_revoked_key_is_refused(world: World, method: str, path: str) -> None:
    tenancy = ROUTES[(method, path)]
    url = _url(path, world.params)
    async with served(world.app) as client:
        if tenancy.dashboard:
            response = await client.request(method, url)
            assert response.status_code in (303, 401), response.text  # to the sign-in page
            login = await client.post("/dashboard/login", data={"api_key": world.revoked})
            assert login.status_code == 401
            return
        for key in (None, world.revoked, world.revoked + "x"):
            response = await _rest(client, method, url, tenancy, key)
            assert response.status_code == 401, (key, response.text)


async def test_an_admin_key_acts_on_the_account_x_account_names(world: World) -> None:
    url = f"/campaigns/{world.other_campaign}"
    async with served(world.app) as client:
        admin = {"Authorization": f"Bearer {world.keys[Role.ADMIN]}", "X-Account": OTHER}
        assert (await client.get(url, headers=admin)).status_code == 200
        for role in (Role.OPERATOR, Role.VIEWER):
            other = {"Authorization": f"Bearer {world.keys[role]}", "X-Account": OTHER}
            response = await client.get(url, headers=other)
            assert response.status_code == 403
            assert f"acts on account {OWN} only" in response.json()["detail"]
