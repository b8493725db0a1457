"""The live progress bar of `campaigns watch` and `campaigns demo`, and how the terminal shows
a moment."""

import asyncio
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from whatsapp_campaigns.domain.models import Progress as CampaignProgress
from whatsapp_campaigns.domain.statuses import MessageStatus
from whatsapp_campaigns.starter import CampaignsClient

# The breakdown shown next to the bar, in reading order.
SHOWN = (
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.RESPONDED,
    MessageStatus.RETRYING,
    MessageStatus.FAILED,
    MessageStatus.INVALID_CONTACT,
    MessageStatus.BLOCKED,
    MessageStatus.SUPPRESSED,
    MessageStatus.CANCELLED,
)


def terminal_time(moment: datetime) -> str:
    """A moment as the terminal shows it: date, time and zone, always in UTC (a throttle can
    last into another day, and the terminal's reader may be anywhere)."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def breakdown(progress: CampaignProgress) -> str:
    parts = [f"{s.value} {progress.counts[s]:,}" for s in SHOWN if progress.counts.get(s)]
    status = progress.status.value
    if progress.throttled_until is not None:
        status += f", throttled until {terminal_time(progress.throttled_until)}"
    return f"[bold]{status}[/bold] " + " · ".join(parts)


async def watch_campaign(
    client: CampaignsClient, campaign_id: str, *, interval: float, console: Console
) -> CampaignProgress:
    """Refresh a progress bar until the campaign ends; return its final progress."""
    columns = (
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[breakdown]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("send", total=100.0, name=campaign_id, breakdown="")
        while True:
            progress = await client.progress(campaign_id)
            bar.update(task, completed=progress.percent_complete, breakdown=breakdown(progress))
            if progress.status.is_terminal:
                return progress
            await asyncio.sleep(interval)
