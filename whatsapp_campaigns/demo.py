"""`campaigns demo`: a sample campaign on the embedded stack (SPEC §8).

It imports a generated audience (the SPEC §7 magic numbers spread among ordinary fictional
numbers, plus one invalid row and one duplicate, to show the import report), launches a
campaign of the `order_update` template from the sandbox sender, shows the live progress bar
until the campaign ends, then does the same with `promo_media` (SPEC §10: an image header from
a fixed `header_media` value, a per-recipient URL suffix from the CSV's `button_0` column, a
quick-reply button), waits until the sandbox has delivered every status webhook it owes and
the API has applied them, and summarizes.

One thing differs from production defaults: +12025550103 hits WhatsApp's messaging limit
once, which makes a campaign wait 12 hours before it sends on that number again; the demo's
campaign waits `messaging_limit_backoff` (seconds) instead, so that it ends while you watch
(its progress says "throttled until ..." meanwhile).
"""

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from whatsapp_campaigns.devstack import DevStack, StackUrls
from whatsapp_campaigns.domain.models import AudienceImportResult, CampaignDraft, Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.progress_view import watch_campaign
from whatsapp_campaigns.store.fixtures import SANDBOX_SENDER

DEFAULT_RECIPIENTS = 3000
MIN_RECIPIENTS = 10
MAX_RECIPIENTS = 50_000
DEMO_TEMPLATE = "order_update"
PROMO_TEMPLATE = "promo_media"
PROMO_IMAGE = "https://sandbox.example.com/media/spring-collection.jpg"
DEFAULT_MESSAGING_LIMIT_BACKOFF = 10.0

# SPEC §7: recipients with a known outcome.
MAGIC_NUMBERS = {
    "+12025550101": "invalid contact",
    "+12025550102": "blocked",
    "+12025550103": "messaging limit once, then accepted",
    "+12025550104": "transient error twice, accepted on the 3rd attempt",
    "+12025550105": "transient error every time: failed",
    "+12025550106": "read, then replies STOP: responded and opted out",
    "+12025550107": "delivered, never read",
    "+12025550108": "accepted, then a failed webhook",
}
# Fictional area codes whose 555-1000..555-9999 numbers pass `phonenumbers` validation.
_AREA_CODES = (202, 212, 312, 415, 617, 713)
_PER_AREA = 9000


def demo_phone_numbers(recipients: int) -> list[str]:
    """`recipients` distinct valid numbers: the magic numbers spread evenly among ordinary
    ones (so that the auto-pause guard, which looks at the failure rate after the first 100
    sends, sees a realistic mix)."""
    if not MIN_RECIPIENTS <= recipients <= MAX_RECIPIENTS:
        raise ValueError(f"recipients must be between {MIN_RECIPIENTS} and {MAX_RECIPIENTS:,}")
    magic = list(MAGIC_NUMBERS)
    ordinary = [
        f"+1{_AREA_CODES[i // _PER_AREA]}555{1000 + i % _PER_AREA:04d}"
        for i in range(recipients - len(magic))
    ]
    step = recipients // len(magic)
    numbers = ordinary
    for index, phone in enumerate(magic):
        numbers.insert(index * step + step // 2, phone)
    return numbers


def write_demo_audience(path: Path, recipients: int) -> Path:
    """The demo's CSV: phone, name, order_id, button_0 (promo_media's URL suffix); plus one
    invalid row and one duplicate."""
    numbers = demo_phone_numbers(recipients)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["phone", "name", "order_id", "button_0"])
        for index, phone in enumerate(numbers):
            writer.writerow(
                [phone, f"Customer {index + 1}", f"A-{10_000 + index}", f"c{index + 1}"]
            )
        writer.writerow(["not a number", "Nobody", "A-0", "c0"])
        writer.writerow([numbers[0], "Customer 1 again", "A-10000", "c1"])
    return path


@dataclass
class DemoResult:
    campaign_id: str
    audience: AudienceImportResult
    progress: Progress  # after the last webhooks settled
    urls: StackUrls
    promo: Progress | None = None  # the promo_media campaign's, after the webhooks settled

    def as_json(self) -> dict[str, Any]:
        audience = self.audience.audience
        return {
            "campaign_id": self.campaign_id,
            "status": self.progress.status.value,
            "status_reason": self.progress.status_reason,
            "total": self.progress.total,
            "counts": {s.value: n for s, n in self.progress.counts.items() if n},
            "errors": [e.model_dump(mode="json") for e in self.progress.errors],
            "audience": {
                "id": audience.id,
                "valid": audience.valid,
                "invalid": audience.invalid,
                "duplicates": audience.duplicates,
                "suppressed": audience.suppressed,
            },
            "temporal_ui": self.urls.workflow(self.campaign_id),
            "api_docs": self.urls.docs,
            "dashboard": self.urls.campaign_page(self.campaign_id),
            "promo_media": (
                {
                    "campaign_id": self.promo.campaign_id,
                    "status": self.promo.status.value,
                    "counts": {s.value: n for s, n in self.promo.counts.items() if n},
                }
                if self.promo is not None
                else None
            ),
        }


async def run_demo(
    stack: DevStack,
    *,
    recipients: int = DEFAULT_RECIPIENTS,
    console: Console,
    messaging_limit_backoff: float = DEFAULT_MESSAGING_LIMIT_BACKOFF,
    interval: float = 0.5,
) -> DemoResult:
    """Import, launch, watch until the end; returns the settled summary."""
    client = stack.campaigns
    started = datetime.now(UTC)
    csv_path = write_demo_audience(
        stack.options.data_dir / f"demo-audience-{recipients}.csv", recipients
    )
    imported = await client.import_audience(
        f"Demo audience {started:%Y-%m-%d %H:%M:%S}", str(csv_path)
    )
    audience = imported.audience
    console.print(
        f"audience [bold]{audience.id}[/bold] from {csv_path}: {audience.valid:,} valid, "
        f"{audience.invalid:,} invalid, {audience.duplicates:,} duplicates, "
        f"{audience.suppressed:,} suppressed (opted out earlier)"
    )
    draft = CampaignDraft(
        name=f"Demo {started:%Y-%m-%d %H:%M:%S}",
        template_name=DEMO_TEMPLATE,
        sender_phone_number_id=SANDBOX_SENDER.phone_number_id,
        audience_id=audience.id,
        policy=CampaignPolicy(messaging_limit_backoff=timedelta(seconds=messaging_limit_backoff)),
    )
    campaign = await client.create_draft(draft, by="demo")
    await client.launch(campaign.id, by="demo")
    console.print(
        f"campaign [bold]{campaign.id}[/bold] launched: {DEMO_TEMPLATE!r} from "
        f"{SANDBOX_SENDER.display_number} ({SANDBOX_SENDER.rate_per_second} msg/s); "
        "messaging-limit backoff shortened to "
        f"{messaging_limit_backoff:g} s for the demo (12 h in production)"
    )
    if (workflow_url := stack.urls.workflow(campaign.id)) is not None:
        console.print(f"follow it in the Temporal UI: {workflow_url}")
    await watch_campaign(client, campaign.id, interval=interval, console=console)
    promo = await client.create_draft(
        draft.model_copy(
            update={
                "name": f"Demo promo {started:%Y-%m-%d %H:%M:%S}",
                "template_name": PROMO_TEMPLATE,
                "variables": {"header_media": PROMO_IMAGE},
            }
        ),
        by="demo",
    )
    await client.launch(promo.id, by="demo")
    console.print(
        f"campaign [bold]{promo.id}[/bold] launched: {PROMO_TEMPLATE!r} (image header, "
        "a URL button with each recipient's suffix, a quick reply); "
        f"preview it: campaigns preview {promo.id}"
    )
    await watch_campaign(client, promo.id, interval=interval, console=console)
    await stack.settle_webhooks()
    progress = await client.progress(campaign.id)
    promo_progress = await client.progress(promo.id)
    return DemoResult(campaign.id, imported, progress, stack.urls, promo_progress)


def print_summary(result: DemoResult, console: Console) -> None:
    progress = result.progress
    title = f"campaign {result.campaign_id}: {progress.status.value}"
    if progress.status_reason:
        title += f" ({progress.status_reason})"
    table = Table(title=title, show_header=True)
    table.add_column("message status")
    table.add_column("messages", justify="right")
    table.add_column("share", justify="right")
    for status in MessageStatus:
        count = progress.counts.get(status, 0)
        if count:
            table.add_row(status.value, f"{count:,}", f"{count / max(1, progress.total):.1%}")
    table.add_row("[bold]total[/bold]", f"[bold]{progress.total:,}[/bold]", "")
    console.print(table)
    for error in progress.errors:
        console.print(f"  error {error.code}: {error.title} x{error.count:,}", highlight=False)
    console.print("[bold]Where to look[/bold]")
    urls = result.urls
    if (workflow_url := urls.workflow(result.campaign_id)) is not None:
        console.print(f"  Temporal UI (workflow, history, signals): {workflow_url}")
        console.print(
            f'  every running campaign: {urls.temporal_ui} search CampaignStatus="sending"'
        )
    if (page := urls.campaign_page(result.campaign_id)) is not None:
        console.print(f"  dashboard: {page}")
    if result.promo is not None:
        promo = result.promo
        console.print(
            f"  {PROMO_TEMPLATE} campaign {promo.campaign_id}: {promo.status.value}, "
            f"{promo.counts.get(MessageStatus.READ, 0):,} read; "
            f"campaigns preview {promo.campaign_id}"
        )
    console.print(f"  REST API: {urls.docs}")
    console.print(
        f"  report: campaigns report {result.campaign_id} --out report.csv"
        f"   status: campaigns status {result.campaign_id}"
    )
    if urls.sandbox is not None:  # Meta's account webhooks, played by the sandbox (SPEC §9)
        console.print(
            f"  play Meta: curl -X POST {urls.sandbox}/sandbox/templates/order_update/status "
            """-H 'Content-Type: application/json' -d '{"status": "PAUSED"}'"""
            "  (its running campaigns pause; APPROVED again, then resume)",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"             curl -X POST {urls.sandbox}/sandbox/numbers/sandbox-sender-1/throughput "
            """-H 'Content-Type: application/json' -d '{"level": "HIGH"}'"""
            "  (campaigns senders list: 1,000 msg/s)",
            highlight=False,
            soft_wrap=True,
        )
