"""Meta's account webhooks on /webhooks/whatsapp (SPEC §9): a number's throughput or messaging
limit, a template's status, and the pause of the campaigns of a template WhatsApp paused."""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
from temporalio.client import Client

from tests.api_helpers import SENDER, UnusedTemporal, make_settings, seed, served
from tests.store_helpers import seed_account, seed_campaign
from tests.webhook_helpers import signed
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import Progress, Template, TemplateStatus
from whatsapp_campaigns.domain.statuses import CampaignStatus
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store import catalog, connections
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.secrets import SecretBox, generate_secret_key
from whatsapp_campaigns.whatsapp.sandbox.account_events import (
    quality_update_body,
    template_status_body,
)

APP_SECRET = "sandbox-app-secret"  # the settings' default WHATSAPP_APP_SECRET


class RecordingClient(CampaignsClient):
    """Records the pauses the webhook asks for instead of calling Temporal."""

    def __init__(self, db: Database) -> None:
        super().__init__(cast(Client, UnusedTemporal()), db, make_settings(db))
        self.paused: list[tuple[str, str | None, str | None]] = []

    async def pause(
        self, campaign_id: str, *, reason: str | None = None, by: str | None = None
    ) -> Progress:
        self.paused.append((campaign_id, reason, by))
        return cast(Progress, None)


@dataclass
class Receiver:
    client: httpx.AsyncClient
    campaigns: RecordingClient
    db: Database
    posted: list[int] = field(default_factory=list)

    async def post(self, body: dict[str, Any], secret: str = APP_SECRET) -> httpx.Response:
        content, headers = signed(body, secret)
        return await self.client.post("/webhooks/whatsapp", content=content, headers=headers)


@pytest.fixture
async def receiver(db: Database) -> AsyncIterator[Receiver]:
    seed(db)  # the default account: its WABA is the settings' WHATSAPP_BUSINESS_ACCOUNT_ID
    recording = RecordingClient(db)
    settings = make_settings(db, CAMPAIGNS_SECRET_KEY=generate_secret_key())
    app = create_app(settings, db, campaigns_client=recording)
    async with served(app) as client:
        yield Receiver(client, recording, db)


def _template_update(
    event: str, name: str = "spring_sale", waba: str = "sandbox"
) -> dict[str, Any]:
    return template_status_body(
        business_account_id=waba,
        template_id="1",
        name=name,
        language="en",
        event=event,
        reason="LOW_QUALITY",
    )


async def test_a_throughput_upgrade_raises_the_numbers_rate(receiver: Receiver) -> None:
    body = quality_update_body(
        business_account_id="sandbox",
        display_number="12025550100",
        event="THROUGHPUT_UPGRADE",
        current_limit="TIER_UNLIMITED",
    )
    assert (await receiver.post(body)).status_code == 200
    sender = catalog.get_sender(receiver.db, "sandbox-sender-1")
    assert (sender.throughput_level, sender.rate_per_second) == ("HIGH", 1000)


async def test_a_paused_template_is_stored_and_pauses_its_running_campaigns(
    receiver: Receiver,
) -> None:
    sending = seed_campaign(receiver.db, "default", status=CampaignStatus.SENDING, sender=SENDER)
    draft = seed_campaign(receiver.db, "default", status=CampaignStatus.DRAFT, sender=SENDER)
    assert (await receiver.post(_template_update("PAUSED"))).status_code == 200
    template = catalog.get_template(receiver.db, "default", "spring_sale", "en")
    assert template is not None and template.status is TemplateStatus.PAUSED
    ((campaign_id, reason, by),) = receiver.campaigns.paused
    assert campaign_id == sending and campaign_id != draft
    assert by == "whatsapp"
    assert reason is not None and "paused template spring_sale (en) (LOW_QUALITY)" in reason


async def test_an_approved_template_pauses_nothing(receiver: Receiver) -> None:
    seed_campaign(receiver.db, "default", status=CampaignStatus.SENDING, sender=SENDER)
    await receiver.post(_template_update("PAUSED"))
    receiver.campaigns.paused.clear()
    assert (await receiver.post(_template_update("APPROVED"))).status_code == 200
    template = catalog.get_template(receiver.db, "default", "spring_sale", "en")
    assert template is not None and template.status is TemplateStatus.APPROVED
    assert receiver.campaigns.paused == []


async def test_a_connected_accounts_waba_tells_the_account(receiver: Receiver) -> None:
    seed_account(receiver.db, "acme")
    box = SecretBox(generate_secret_key())
    connections.connect_account(receiver.db, box, "acme", waba_id="waba-acme", access_token="t")
    catalog.upsert_templates(receiver.db, "acme", [Template(name="spring_sale")])
    await receiver.post(_template_update("DISABLED", waba="waba-acme"))
    acme = catalog.get_template(receiver.db, "acme", "spring_sale", "en")
    default = catalog.get_template(receiver.db, "default", "spring_sale", "en")
    assert acme is not None and acme.status is TemplateStatus.DISABLED
    assert default is not None and default.status is TemplateStatus.APPROVED


@pytest.mark.parametrize(
    "body",
    [
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "sandbox",
                    "changes": [
                        {"field": "message_template_status_update", "value": "not an object"}
                    ],
                }
            ],
        },
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "sandbox",
                    "changes": [{"field": "message_template_status_update", "value": {"event": 3}}],
                }
            ],
        },
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "phone_number_quality_update", "value": {}}]}],
        },
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "nobody",
                    "changes": [
                        {
                            "field": "phone_number_quality_update",
                            "value": {"display_phone_number": "1", "event": "FLAGGED"},
                        }
                    ],
                }
            ],
        },
    ],
    ids=["value-not-object", "no-template-name", "no-entry-id", "unknown-waba"],
)
async def test_a_malformed_account_webhook_answers_200_with_a_warning(
    receiver: Receiver, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="whatsapp_campaigns.api.account_webhooks")
    response = await receiver.post(body)
    assert response.status_code == 200  # Meta must not retry it forever
    assert caplog.records, "a warning says what was skipped"
    assert receiver.campaigns.paused == []


async def test_an_unsigned_account_webhook_is_refused(receiver: Receiver) -> None:
    response = await receiver.post(_template_update("PAUSED"), secret="forged")
    assert response.status_code == 403
    template = catalog.get_template(receiver.db, "default", "spring_sale", "en")
    assert template is not None and template.status is TemplateStatus.APPROVED


async def test_a_webhook_signed_with_an_accounts_own_app_secret_is_accepted(
    db: Database,
) -> None:
    seed(db)
    key = generate_secret_key()
    connections.connect_account(
        db, SecretBox(key), "default", waba_id="sandbox", access_token="t", app_secret="own-secret"
    )
    settings = make_settings(db, CAMPAIGNS_SECRET_KEY=key)
    app = create_app(settings, db, campaigns_client=RecordingClient(db))
    async with served(app) as client:
        content, headers = signed(_template_update("PAUSED"), "own-secret")
        response = await client.post("/webhooks/whatsapp", content=content, headers=headers)
    assert response.status_code == 200
