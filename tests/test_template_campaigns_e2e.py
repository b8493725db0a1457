"""Campaigns of templates with media headers, buttons and positional variables (SPEC §10), end
to end: a real Temporal dev server and worker, the real Cloud API client (whatsapp/cloud.py)
over HTTP to the sandbox server, which checks the components as Meta does. The request bodies
the sandbox received are asserted exactly."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, running_engine
from tests.servers import serving
from whatsapp_campaigns.domain.models import ActorKind, CampaignDraft
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.store import campaigns, messages, reports
from whatsapp_campaigns.store.audiences import import_audience_rows
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER
from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator, SandboxResponse
from whatsapp_campaigns.whatsapp.sandbox.server import create_sandbox_app

pytestmark = pytest.mark.e2e

IMAGE = "https://cdn.example.com/media/spring.jpg"


class RecordingEmulator(SandboxEmulator):
    """The sandbox, keeping every send request body it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    async def send(
        self, phone_number_id: str, body: object, *, access_token: str | None
    ) -> SandboxResponse:
        assert isinstance(body, dict)
        self.bodies.append(body)
        return await super().send(phone_number_id, body, access_token=access_token)


@pytest.fixture
async def engine(dev_server: WorkflowEnvironment, db_url: str) -> AsyncIterator[Engine]:
    emulator = RecordingEmulator()
    async with serving(create_sandbox_app(emulator)) as url:
        cloud = CloudApiProvider(url, "v21.0", "test-token")
        async with running_engine(
            dev_server.client, db_url, sender_rate=500, emulator=emulator, provider=cloud
        ) as running:
            yield running


async def run_campaign(
    engine: Engine,
    template: str,
    rows: Sequence[dict[str, str]],
    variables: dict[str, str] | None = None,
    policy: CampaignPolicy | None = None,
) -> str:
    audience = await asyncio.to_thread(
        import_audience_rows, engine.db, SANDBOX_ACCOUNT_ID, f"{template} audience", rows
    )
    draft = CampaignDraft(
        name=f"{template} campaign",
        template_name=template,
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
        audience_id=audience.audience.id,
        variables=variables or {},
        policy=policy or CampaignPolicy(),
    )
    campaign = campaigns.create_draft(engine.db, SANDBOX_ACCOUNT_ID, draft)
    campaigns.set_schedule(engine.db, campaign.id, datetime.now(UTC), "UTC")
    campaigns.change_status(
        engine.db, campaign.id, CampaignStatus.SCHEDULED, action="schedule", actor=ActorKind.USER
    )
    final = await engine.run(campaign.id)
    assert final.status is CampaignStatus.COMPLETED, final.status_reason
    return campaign.id


def bodies_by_recipient(engine: Engine) -> dict[str, dict[str, Any]]:
    emulator = engine.emulator
    assert isinstance(emulator, RecordingEmulator)
    return {body["to"]: body for body in emulator.bodies}


def message_ids(engine: Engine, campaign_id: str) -> dict[str, str]:
    return {
        f"+{row.phone_e164.lstrip('+')}": str(row.message_id)
        for row in reports.iter_report_rows(engine.db, campaign_id)
    }


async def test_promo_media_goes_out_with_image_name_url_suffix_and_payload(
    engine: Engine,
) -> None:
    rows = [
        {"phone": "+12025551001", "name": "Ana", "button_0": "ana-1", "button_1": "ana-no"},
        {"phone": "+12025551002", "name": "Bo", "button_0": "bo-2", "button_1": ""},
    ]
    campaign_id = await run_campaign(engine, "promo_media", rows, {"header_media": IMAGE})

    ids = message_ids(engine, campaign_id)
    sent = bodies_by_recipient(engine)
    assert sent["12025551001"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "12025551001",
        "type": "template",
        "template": {
            "name": "promo_media",
            "language": {"code": "en"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": IMAGE}}]},
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": "Ana", "parameter_name": "name"}],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "ana-1"}],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "1",
                    "parameters": [{"type": "payload", "payload": "ana-no"}],
                },
            ],
        },
        "biz_opaque_callback_data": ids["+12025551001"],
    }
    # Bo has no payload of his own: no quick-reply component (WhatsApp reports its text).
    assert sent["12025551002"]["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": IMAGE}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Bo", "parameter_name": "name"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "bo-2"}],
        },
    ]


async def test_a_positional_template_goes_out_with_header_and_body_by_position(
    engine: Engine,
) -> None:
    rows = [{"phone": "+12025551003", "1": "Cy", "2": "May 3 at 10:00"}]
    campaign_id = await run_campaign(engine, "appointment_reminder", rows, {"header_1": "dentist"})

    (body,) = bodies_by_recipient(engine).values()
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "12025551003",
        "type": "template",
        "template": {
            "name": "appointment_reminder",
            "language": {"code": "en"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": "dentist"}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Cy"},
                        {"type": "text", "text": "May 3 at 10:00"},
                    ],
                },
            ],
        },
        "biz_opaque_callback_data": message_ids(engine, campaign_id)["+12025551003"],
    }


async def test_skip_invalid_sends_to_the_valid_recipients_and_fails_the_rest_unsent(
    engine: Engine,
) -> None:
    rows = [
        {"phone": "+12025551004", "name": "Ana", "button_0": "ana-1"},
        {"phone": "+12025551005", "name": "Bo\nBo", "button_0": "bo-2"},  # newline: invalid
    ]
    policy = CampaignPolicy(skip_invalid=True)
    campaign_id = await run_campaign(engine, "promo_media", rows, {"header_media": IMAGE}, policy)

    assert list(bodies_by_recipient(engine)) == ["12025551004"]
    statuses = engine.statuses(campaign_id)
    assert statuses["+12025551005"] is MessageStatus.FAILED
    failed = [r for r in reports.iter_report_rows(engine.db, campaign_id) if r.error_title]
    assert [r.error_title for r in failed] == [
        "invalid template value: name (text with a newline, a tab or more than 4 consecutive "
        "spaces)"
    ]
    assert messages.count_by_status(engine.db, campaign_id)[MessageStatus.FAILED] == 1
