"""`/campaigns` through the ASGI app: listing with rates, drafts, and the refusals that the
client decides before talking to Temporal (the success paths of actions that start or steer a
workflow are the engine's end-to-end tests)."""

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import httpx
import pytest
from sqlalchemy import event
from temporalio.client import Client

from tests.api_helpers import (
    ACCOUNT,
    UnusedTemporal,
    api_client,
    draft_body,
    make_settings,
    move_to,
    seed,
    seed_audience,
    seed_messages,
    served,
)
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import CampaignDraft, Progress
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.starter import CampaignsClient, CampaignUnavailable
from whatsapp_campaigns.store import accounts, campaigns, listing
from whatsapp_campaigns.store.db import Database

S = CampaignStatus
M = MessageStatus


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    seed(db)
    async with api_client(db) as client:
        yield client


async def _create(api: httpx.AsyncClient, **changes: object) -> str:
    response = await api.post("/campaigns", json=draft_body(**changes))
    assert response.status_code == 201, response.text
    campaign_id: str = response.json()["id"]
    return campaign_id


# ----------------------------------------------------------------------------------- drafts


async def test_create_draft_answers_201_with_the_draft(api: httpx.AsyncClient) -> None:
    response = await api.post("/campaigns", json=draft_body(name="Launch"))
    assert response.status_code == 201
    assert response.json()["status"] == "draft"
    assert response.json()["name"] == "Launch"


async def test_create_draft_records_the_actor_header_in_the_timeline(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/campaigns", json=draft_body(), headers={"X-Actor": "maria"})
    detail = (await api.get(f"/campaigns/{response.json()['id']}")).json()
    assert detail["progress"]["timeline"][0]["by"] == "maria"


async def test_create_draft_with_an_unknown_sender_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/campaigns", json=draft_body(sender_phone_number_id="nope"))
    assert response.status_code == 422
    assert response.json()["detail"] == "unknown sender number nope for account default"


async def test_create_draft_with_an_unknown_timezone_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post("/campaigns", json=draft_body(timezone="Mars/Olympus"))
    assert response.status_code == 422
    assert "unknown timezone" in response.json()["detail"]


async def test_create_draft_without_a_name_is_422(api: httpx.AsyncClient) -> None:
    body = draft_body()
    del body["name"]
    response = await api.post("/campaigns", json=body)
    assert response.status_code == 422


async def test_get_campaign_gives_progress_and_the_actions_a_draft_allows(
    api: httpx.AsyncClient,
) -> None:
    campaign_id = await _create(api)
    body = (await api.get(f"/campaigns/{campaign_id}")).json()
    assert body["campaign"]["id"] == campaign_id
    assert body["progress"]["status"] == "draft"
    assert {"schedule", "launch", "delete", "edit"} <= set(body["allowed_actions"])
    assert "pause" not in body["allowed_actions"]


async def test_get_an_unknown_campaign_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/campaigns/doesnotexist")
    assert response.status_code == 404
    assert response.json()["detail"] == "campaign doesnotexist not found"


async def test_a_campaign_of_another_account_is_404(api: httpx.AsyncClient, db: Database) -> None:
    campaign_id = await _create(api)
    accounts.ensure_account(db, "other")
    response = await api.get(f"/campaigns/{campaign_id}", headers={"X-Account": "other"})
    assert response.status_code == 404


async def test_edit_draft_replaces_its_content(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.put(f"/campaigns/{campaign_id}", json=draft_body(name="Renamed"))
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"


async def test_edit_a_sending_campaign_is_409_with_the_reason(
    api: httpx.AsyncClient, db: Database
) -> None:
    campaign_id = await _create(api)
    move_to(db, campaign_id, S.QUEUED, S.SENDING)
    response = await api.put(f"/campaigns/{campaign_id}", json=draft_body())
    assert response.status_code == 409
    assert (
        response.json()["detail"] == "cannot edit: content is locked once the campaign is sending"
    )


async def test_delete_draft_answers_204_and_it_is_gone(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    assert (await api.delete(f"/campaigns/{campaign_id}")).status_code == 204
    assert (await api.get(f"/campaigns/{campaign_id}")).status_code == 404


async def test_delete_a_scheduled_campaign_is_409(api: httpx.AsyncClient, db: Database) -> None:
    campaign_id = await _create(api)
    move_to(db, campaign_id, S.SCHEDULED)
    response = await api.delete(f"/campaigns/{campaign_id}")
    assert response.status_code == 409
    assert "cannot delete" in response.json()["detail"]


async def test_duplicate_makes_a_new_draft_from_the_campaign(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api, name="Original")
    response = await api.post(f"/campaigns/{campaign_id}/duplicate")
    assert response.status_code == 201
    assert response.json()["duplicated_from"] == campaign_id
    assert response.json()["name"] == "Original (copy)"


# ---------------------------------------------------------------------------------- listing


async def test_list_gives_items_and_the_total(api: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await _create(api, name=name)
    body = (await api.get("/campaigns", params={"limit": 2})).json()
    assert body["total"] == 3
    assert len(body["items"]) == 2


async def test_list_filters_by_several_statuses(api: httpx.AsyncClient, db: Database) -> None:
    await _create(api, name="d")
    move_to(db, await _create(api, name="sc"), S.SCHEDULED)
    move_to(db, await _create(api, name="se"), S.QUEUED, S.SENDING)
    response = await api.get("/campaigns", params=[("status", "scheduled"), ("status", "sending")])
    assert sorted(item["name"] for item in response.json()["items"]) == ["sc", "se"]


async def test_list_searches_the_name(api: httpx.AsyncClient) -> None:
    await _create(api, name="Spring sale")
    await _create(api, name="Black Friday")
    body = (await api.get("/campaigns", params={"search": "friday"})).json()
    assert [item["name"] for item in body["items"]] == ["Black Friday"]


async def test_list_computes_sent_delivered_and_failed_percent(
    api: httpx.AsyncClient, db: Database
) -> None:
    campaign_id = await _create(api)
    seed_messages(db, campaign_id, [M.SENT, M.DELIVERED, M.READ, M.FAILED, M.BLOCKED])
    (item,) = (await api.get("/campaigns")).json()["items"]
    assert item["rates"]["total"] == 5
    assert item["rates"]["sent_percent"] == 60.0
    assert item["rates"]["delivered_percent"] == 40.0
    assert item["rates"]["failed_percent"] == 40.0


async def test_list_of_a_campaign_without_messages_has_zero_rates(api: httpx.AsyncClient) -> None:
    await _create(api)
    (item,) = (await api.get("/campaigns")).json()["items"]
    assert item["rates"]["total"] == 0
    assert item["rates"]["sent_percent"] == 0.0


async def test_list_limit_above_200_is_422(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns", params={"limit": 201})).status_code == 422


async def test_list_with_a_malformed_since_is_422(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns", params={"since": "yesterday"})).status_code == 422


async def test_list_with_a_since_without_offset_is_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/campaigns", params={"since": "2026-01-01T00:00:00"})
    assert response.status_code == 422


async def test_list_with_an_unknown_status_is_422(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns", params={"status": "exploded"})).status_code == 422


def test_message_counts_of_a_page_come_from_one_grouped_query(db: Database) -> None:
    seed(db)
    draft = CampaignDraft.model_validate(draft_body())
    ids = [campaigns.create_draft(db, ACCOUNT, draft).id for _ in range(3)]
    seed_messages(db, ids[0], [M.SENT, M.SENT])
    seed_messages(db, ids[2], [M.FAILED])
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        counts = listing.message_counts(db, ids)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert counts == {ids[0]: {M.SENT: 2}, ids[1]: {}, ids[2]: {M.FAILED: 1}}
    assert sum("FROM messages" in s for s in statements) == 1


# ---------------------------------------------------------------- actions refused up front


async def test_pause_a_draft_is_409_with_the_reason(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(f"/campaigns/{campaign_id}/pause", json={"reason": "oops"})
    assert response.status_code == 409
    assert response.json() == {
        "detail": "cannot pause: the campaign is draft and has not started sending"
    }


async def test_pause_without_a_body_is_refused_the_same_way(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    assert (await api.post(f"/campaigns/{campaign_id}/pause")).status_code == 409


async def test_a_refusal_logs_one_line(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    campaign_id = await _create(api)
    caplog.set_level("INFO", logger="whatsapp_campaigns.api")
    await api.post(f"/campaigns/{campaign_id}/resume")
    lines = [r for r in caplog.records if r.name == "whatsapp_campaigns.api"]
    assert len(lines) == 1
    assert "409" in lines[0].getMessage() and "cannot resume" in lines[0].getMessage()


async def test_cancel_a_completed_campaign_is_409(api: httpx.AsyncClient, db: Database) -> None:
    campaign_id = await _create(api)
    move_to(db, campaign_id, S.QUEUED, S.SENDING, S.COMPLETED)
    response = await api.post(f"/campaigns/{campaign_id}/cancel", json={"reason": "late"})
    assert response.status_code == 409
    assert response.json()["detail"] == "cannot cancel: the campaign is completed (finished)"


async def test_cancel_an_unknown_campaign_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.post("/campaigns/nope/cancel", json={})).status_code == 404


async def test_reschedule_a_draft_is_409(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = await api.post(f"/campaigns/{campaign_id}/reschedule", json={"send_at": later})
    assert response.status_code == 409
    assert "only a scheduled campaign can move" in response.json()["detail"]


async def test_reschedule_with_a_malformed_send_at_is_422(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(f"/campaigns/{campaign_id}/reschedule", json={"send_at": "soon"})
    assert response.status_code == 422


async def test_schedule_with_a_malformed_send_at_is_422(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(f"/campaigns/{campaign_id}/schedule", json={"send_at": "31/12"})
    assert response.status_code == 422


async def test_schedule_with_a_send_at_without_offset_is_422(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(
        f"/campaigns/{campaign_id}/schedule", json={"send_at": "2030-01-01T09:00:00"}
    )
    assert response.status_code == 422


async def test_schedule_in_the_past_is_409(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(
        f"/campaigns/{campaign_id}/schedule", json={"send_at": "2020-01-01T09:00:00+01:00"}
    )
    assert response.status_code == 409
    assert "has passed" in response.json()["detail"]


async def test_schedule_without_an_audience_is_409_with_the_preflight_problems(
    api: httpx.AsyncClient,
) -> None:
    campaign_id = await _create(api, template_name="promo_pending")
    response = await api.post(f"/campaigns/{campaign_id}/schedule", json={"send_at": None})
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith("cannot schedule: no audience")
    assert "promo_pending" in detail and "PENDING" in detail


async def test_launch_a_sending_campaign_is_409(api: httpx.AsyncClient, db: Database) -> None:
    campaign_id = await _create(api)
    move_to(db, campaign_id, S.QUEUED, S.SENDING)
    response = await api.post(f"/campaigns/{campaign_id}/launch")
    assert response.status_code == 409
    assert response.json()["detail"] == "cannot launch: the campaign is already sending"


async def test_retry_failed_on_a_draft_is_409(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    response = await api.post(f"/campaigns/{campaign_id}/retry-failed")
    assert response.status_code == 409


async def test_test_send_to_an_invalid_number_is_422(api: httpx.AsyncClient, db: Database) -> None:
    campaign_id = await _create(api, audience_id=seed_audience(db))
    response = await api.post(f"/campaigns/{campaign_id}/test-send", json={"to": "12"})
    assert response.status_code == 422
    assert "cannot test-send to '12'" in response.json()["detail"]


async def test_test_send_from_a_finished_campaign_is_409(
    api: httpx.AsyncClient, db: Database
) -> None:
    campaign_id = await _create(api)
    move_to(db, campaign_id, S.QUEUED, S.FAILED)
    response = await api.post(f"/campaigns/{campaign_id}/test-send", json={"to": "+12025550123"})
    assert response.status_code == 409


async def test_test_send_without_to_is_422(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    assert (await api.post(f"/campaigns/{campaign_id}/test-send", json={})).status_code == 422


# ------------------------------------------------------------------- progress and report


async def test_progress_of_a_draft_comes_from_the_store(api: httpx.AsyncClient) -> None:
    campaign_id = await _create(api)
    body = (await api.get(f"/campaigns/{campaign_id}/progress")).json()
    assert body["campaign_id"] == campaign_id
    assert body["status"] == "draft"
    assert body["total"] == 0


async def test_progress_of_a_finished_campaign_counts_its_messages(
    api: httpx.AsyncClient, db: Database
) -> None:
    campaign_id = await _create(api)
    seed_messages(db, campaign_id, [M.DELIVERED, M.FAILED])
    move_to(db, campaign_id, S.QUEUED, S.SENDING, S.COMPLETED)
    body = (await api.get(f"/campaigns/{campaign_id}/progress")).json()
    assert body["counts"] == {"delivered": 1, "failed": 1}
    assert body["percent_complete"] == 100.0


async def test_report_is_a_csv_attachment_with_one_row_per_message(
    api: httpx.AsyncClient, db: Database
) -> None:
    campaign_id = await _create(api)
    seed_messages(db, campaign_id, [M.SENT, M.FAILED, M.READ])
    response = await api.get(f"/campaigns/{campaign_id}/report.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="campaign-{campaign_id}.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["status"] for row in rows] == ["sent", "failed", "read"]


async def test_report_of_an_unknown_campaign_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/campaigns/nope/report.csv")).status_code == 404


# ------------------------------------------------------------------- the Temporal connection


async def test_read_routes_never_build_the_campaigns_client(db: Database) -> None:
    seed(db)
    app = create_app(make_settings(db), db)
    async with served(app) as api:
        assert (await api.get("/campaigns")).status_code == 200
        assert (await api.get("/healthz")).status_code == 200
    assert app.state.campaigns_client._client is None


async def test_drafts_are_created_while_temporal_is_unreachable(db: Database) -> None:
    seed(db)
    settings = make_settings(db, TEMPORAL_ADDRESS="127.0.0.1:1")
    app = create_app(settings, db)
    async with served(app) as api:
        response = await api.post("/campaigns", json=draft_body())
    assert response.status_code == 201


async def test_scheduling_while_temporal_is_unreachable_is_503(db: Database) -> None:
    seed(db)
    app = create_app(make_settings(db, TEMPORAL_ADDRESS="127.0.0.1:1"), db)
    async with served(app) as api:
        created = await api.post("/campaigns", json=draft_body(audience_id=seed_audience(db)))
        response = await api.post(f"/campaigns/{created.json()['id']}/launch")
    assert response.status_code == 503
    assert response.json() == {"detail": "Temporal is unreachable; try again"}


class _BusyWorkflowClient(CampaignsClient):
    """A client whose campaign workflow never takes the command (its worker is down)."""

    async def pause(
        self, campaign_id: str, *, reason: str | None = None, by: str | None = None
    ) -> Progress:
        raise CampaignUnavailable(f"cannot pause campaign {campaign_id} now: nothing was changed")


async def test_a_command_the_workflow_does_not_take_is_503_with_retry_after(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(db)
    settings = make_settings(db)
    client = _BusyWorkflowClient(cast(Client, UnusedTemporal()), db, settings)
    app = create_app(settings, db, campaigns_client=client)
    async with served(app) as api:
        created = await api.post("/campaigns", json=draft_body())
        campaign_id = created.json()["id"]
        response = await api.post(f"/campaigns/{campaign_id}/pause")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "nothing was changed" in response.json()["detail"]
    assert any("503 POST" in r.getMessage() for r in caplog.records)
