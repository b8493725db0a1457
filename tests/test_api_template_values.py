"""The REST API for templates with media and buttons (SPEC §10): `variables` on a campaign,
unknown names refused, and a schedule refused with the invalid values by rule and row."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api_helpers import api_client, draft_body, seed, seed_audience
from whatsapp_campaigns.store.db import Database

IMAGE = "https://cdn.example.com/spring.jpg"


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    seed(db)
    async with api_client(db) as client:
        yield client


def promo(audience_id: str, **changes: object) -> dict[str, object]:
    return draft_body(
        template_name="promo_media",
        audience_id=audience_id,
        variables={"header_media": IMAGE, "button_0": "spring"},
        **changes,
    )


async def test_a_campaign_keeps_its_fixed_variables(api: httpx.AsyncClient, db: Database) -> None:
    created = await api.post("/campaigns", json=promo(seed_audience(db)))

    assert created.status_code == 201, created.text
    fetched = await api.get(f"/campaigns/{created.json()['id']}")
    assert fetched.json()["campaign"]["variables"] == {"header_media": IMAGE, "button_0": "spring"}


async def test_an_unknown_variable_name_is_422_naming_it(
    api: httpx.AsyncClient, db: Database
) -> None:
    body = promo(seed_audience(db))
    body["variables"] = {"header_image": IMAGE}

    answer = await api.post("/campaigns", json=body)

    assert answer.status_code == 422
    assert "no variable 'header_image'" in answer.json()["detail"]


async def test_schedule_with_invalid_values_is_422_with_counts_per_rule_and_first_rows(
    api: httpx.AsyncClient, db: Database
) -> None:
    body = promo(seed_audience(db, ["+12025550110", "+12025550111"]))
    body["variables"] = {"header_media": "http://cdn.example.com/a.jpg", "button_0": "spring"}
    campaign_id = (await api.post("/campaigns", json=body)).json()["id"]

    answer = await api.post(f"/campaigns/{campaign_id}/schedule", json={"send_at": None})

    assert answer.status_code == 422
    invalid = answer.json()["invalid_values"]
    assert (invalid["checked"], invalid["invalid"], invalid["by_rule"]) == (
        2,
        2,
        {"media_link": 2},
    )
    assert [row["phone"] for row in invalid["first_rows"]] == ["+12025550110", "+12025550111"]
