"""Campaign commands: create, schedule, steer, watch, list, report, retry, duplicate, test-send."""

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from whatsapp_campaigns.cli.app import (
    AccountOption,
    ByOption,
    JsonOption,
    app,
    console,
    errors,
    fail,
    open_store,
    parse_time,
    print_invalid_values,
    print_json,
    run,
)
from whatsapp_campaigns.domain.models import Campaign, CampaignDraft, Progress
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.statuses import CampaignStatus, MessageStatus
from whatsapp_campaigns.progress_view import terminal_time
from whatsapp_campaigns.starter import CampaignsClient
from whatsapp_campaigns.store.preflight import PreflightReport


@app.command()
def create(
    name: Annotated[str, typer.Option(help="Campaign name.")],
    template: Annotated[str, typer.Option(help="Approved WhatsApp template name.")],
    audience: Annotated[str, typer.Option(help="Audience id (from `campaigns audience import`).")],
    sender: Annotated[str, typer.Option(help="Sender phone number id.")],
    language: Annotated[str, typer.Option(help="Template language code.")] = "en",
    timezone: Annotated[str, typer.Option(help="Timezone the schedule is shown in.")] = "UTC",
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            metavar="KEY=VALUE",
            help="A fixed template value (repeatable), used where the audience has no value: "
            "body/header variables by name (or 1, 2... if positional), header_media (link), "
            "button_N (URL suffix, quick-reply payload, coupon code).",
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Send to the recipients whose template values pass the checks; mark the "
            "others failed with the reason (default: refuse to schedule).",
        ),
    ] = False,
    weight: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=1000,
            help="This campaign's share of its sender number against the other campaigns "
            "sending on it (equal shares by default; 2 = twice the messages per second).",
        ),
    ] = 1.0,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            max=32,
            help="Child workflows that send the messages, each a share of them: 1 for a "
            "standard number; about one per 150 msg/s for a high-throughput number on a "
            "production cluster (docs/scaling.md).",
        ),
    ] = 1,
    account: AccountOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a draft campaign, and report recipients whose template values would be refused."""
    draft = CampaignDraft(
        name=name,
        template_name=template,
        language=language,
        sender_phone_number_id=sender,
        audience_id=audience,
        timezone=timezone,
        variables=_parse_vars(var or []),
        policy=CampaignPolicy(skip_invalid=skip_invalid, weight=weight, send_partitions=partitions),
    )

    async def create_and_check(client: CampaignsClient) -> tuple[Campaign, PreflightReport]:
        campaign = await client.create_draft(draft, account_id=account, by=by)
        return campaign, await client.preflight(campaign.id)

    campaign, report = run(create_and_check)
    values = report.values
    if as_json:
        print_json(
            {
                **campaign.model_dump(mode="json"),
                "invalid_values": values.as_json() if values and not values.ok else None,
            }
        )
        return
    console.print(f"created draft [bold]{campaign.id}[/bold] ({campaign.name})")
    if values is not None and not values.ok:
        print_invalid_values(values.as_json())
        then = "they will be marked failed" if skip_invalid else "scheduling is refused"
        errors.print(f"[yellow]warning:[/yellow] fix the audience or --var values; {then}.")


def _parse_vars(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--var {item!r}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


@app.command()
def schedule(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    at: Annotated[str | None, typer.Option("--at", help="Send time, ISO 8601 with offset.")] = None,
    now: Annotated[bool, typer.Option("--now", help="Send now.")] = False,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a draft (--at TIME) or launch it (--now). Runs the preflight checks first."""
    if (at is None) == (not now):
        fail("give exactly one of --at TIME or --now")
    send_at = parse_time(at, "--at") if at else None
    campaign = run(lambda c: c.schedule(campaign_id, send_at, by=by))
    if as_json:
        print_json(campaign)
    else:
        when = campaign.send_at.isoformat() if campaign.send_at else "now"
        console.print(f"campaign {campaign.id} scheduled for {when}")


def _steer(
    action: Callable[[CampaignsClient], Awaitable[Progress]], as_json: bool, verb: str
) -> None:
    progress = run(action)
    if as_json:
        print_json(progress)
    else:
        console.print(f"campaign {progress.campaign_id} {verb}: now [bold]{progress.status}[/bold]")


ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why (shown in the timeline).")]


@app.command()
def pause(
    campaign_id: str, reason: ReasonOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Pause sending: no new message starts; in-flight sends finish."""
    _steer(lambda c: c.pause(campaign_id, reason=reason, by=by), as_json, "paused")


@app.command()
def resume(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused campaign where it stopped."""
    _steer(lambda c: c.resume(campaign_id, by=by), as_json, "resumed")


@app.command()
def cancel(
    campaign_id: str, reason: ReasonOption = None, by: ByOption = None, as_json: JsonOption = False
) -> None:
    """Cancel for good (refused within 5 minutes of a scheduled send time)."""
    _steer(lambda c: c.cancel(campaign_id, reason=reason, by=by), as_json, "cancelled")


@app.command()
def reschedule(
    campaign_id: str,
    at: Annotated[str, typer.Option("--at", help="New send time, ISO 8601 with offset.")],
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the send time of a scheduled campaign."""
    send_at = parse_time(at, "--at")
    _steer(lambda c: c.reschedule(campaign_id, send_at, by=by), as_json, "rescheduled")


@app.command()
def status(campaign_id: str, as_json: JsonOption = False) -> None:
    """Show a campaign's progress: the workflow's `progress` query while it runs, the store's
    record once it has finished (Temporal is then not contacted)."""
    progress = run(lambda c: c.progress(campaign_id), temporal_on_demand=True)
    if as_json:
        print_json(progress)
        return
    console.print(render_progress(progress))


def render_progress(progress: Progress) -> Table:
    table = Table(
        title=f"campaign {progress.campaign_id}: {progress.status.value}", show_header=False
    )
    table.add_row("complete", f"{progress.percent_complete:.1f}% of {progress.total:,}")
    if progress.status_reason:
        table.add_row("reason", progress.status_reason)
    if progress.throttled_until:
        table.add_row("throttled until", terminal_time(progress.throttled_until))
    for message_status in MessageStatus:
        count = progress.counts.get(message_status, 0)
        if count:
            table.add_row(message_status.value, f"{count:,}")
    for error in progress.errors[:5]:
        table.add_row(f"error {error.code}", f"{error.title} ({error.count:,})")
    return table


@app.command()
def watch(
    campaign_id: str,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Live progress bar with the message breakdown, until the campaign ends."""
    from whatsapp_campaigns.progress_view import watch_campaign

    async def follow(client: CampaignsClient) -> Progress:
        await client.get(campaign_id)  # an unknown id: one error line, not an empty bar first
        return await watch_campaign(client, campaign_id, interval=interval, console=console)

    final = run(follow, temporal_on_demand=True)
    console.print(render_progress(final))


@app.command("list")
def list_campaigns(
    status_filter: Annotated[
        list[CampaignStatus] | None, typer.Option("--status", help="Only these statuses.")
    ] = None,
    sender: Annotated[str | None, typer.Option(help="Only this sender number id.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601).")] = None,
    search: Annotated[str | None, typer.Option(help="Name contains, or exact id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    account: AccountOption = None,
    as_json: JsonOption = False,
) -> None:
    """List campaigns, newest first."""
    since_at = parse_time(since, "--since") if since else None
    until_at = parse_time(until, "--until") if until else None
    items, total = run(
        lambda c: c.list(
            account_id=account,
            statuses=status_filter,
            sender=sender,
            since=since_at,
            until=until_at,
            search=search,
            limit=limit,
        )
    )
    if as_json:
        print_json({"items": [i.model_dump(mode="json") for i in items], "total": total})
        return
    table = Table(title=f"{len(items)} of {total} campaigns")
    for column in ("id", "name", "status", "send at", "sender"):
        table.add_column(column)
    for item in items:
        table.add_row(
            item.id,
            item.name,
            item.status.value,
            item.send_at.isoformat() if item.send_at else "",
            item.sender_phone_number_id,
        )
    console.print(table)


@app.command()
def report(
    campaign_id: str,
    out: Annotated[Path | None, typer.Option("--out", help="CSV file (default: stdout).")] = None,
) -> None:
    """CSV report of every message: status, error, timestamps."""
    from whatsapp_campaigns.store import campaigns, reports

    with open_store() as db:
        campaigns.get_campaign(db, campaign_id)  # not found: no header, no empty file first
        if out is None:
            reports.write_report_csv(db, campaign_id, sys.stdout)
        else:
            with out.open("w", newline="") as file:
                rows = reports.write_report_csv(db, campaign_id, file)
            errors.print(f"{rows:,} messages written to {out}")


@app.command("retry-failed")
def retry_failed(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Send the failed messages of a finished campaign again, as a new run."""
    campaign = run(lambda c: c.retry_failed(campaign_id, by=by))
    if as_json:
        print_json(campaign)
    else:
        console.print(f"campaign {campaign.id}: run {campaign.run_number} started")


@app.command()
def duplicate(campaign_id: str, by: ByOption = None, as_json: JsonOption = False) -> None:
    """Copy a campaign into a new draft."""
    campaign = run(lambda c: c.duplicate(campaign_id, by=by))
    if as_json:
        print_json(campaign)
    else:
        console.print(f"new draft [bold]{campaign.id}[/bold] ({campaign.name})")


@app.command("test-send")
def test_send(
    campaign_id: str,
    to: Annotated[str, typer.Option("--to", help="Phone number to send the test to.")],
    as_json: JsonOption = False,
) -> None:
    """Send the campaign's message to one number now, before scheduling it."""
    message_id = run(lambda c: c.test_send(campaign_id, to))
    if as_json:
        print_json({"id": message_id, "to": to})
    else:
        console.print(f"test message sent to {to}: {message_id}")
