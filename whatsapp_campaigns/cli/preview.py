"""`campaigns preview ID [--row N]`: the message as one recipient will see it (SPEC §10)."""

from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from whatsapp_campaigns.cli.app import (
    JsonOption,
    app,
    console,
    errors,
    fail,
    open_store,
    print_json,
)
from whatsapp_campaigns.domain.templates import check_values, merge_values
from whatsapp_campaigns.whatsapp.components import MessagePreview, preview_message

_BUTTON_ICONS = {"URL": "↗", "PHONE_NUMBER": "✆", "COPY_CODE": "⧉", "QUICK_REPLY": "↩"}


@app.command()
def preview(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    row: Annotated[
        int | None,
        typer.Option(
            "--row",
            help="The audience's CSV row to preview (the header is row 1); default: the "
            "first recipient.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the message as a recipient sees it: header (image or text), body, footer, buttons,
    with their values (CSV column, else --var), and any rule those values break."""
    from whatsapp_campaigns.store import audiences, campaigns, catalog

    with open_store() as db:
        campaign = campaigns.get_campaign(db, campaign_id)
        template = catalog.get_template(
            db, campaign.account_id, campaign.template_name, campaign.language
        )
        recipients = (
            audiences.sample_recipients(db, campaign.audience_id, 1, row_number=row)
            if campaign.audience_id
            else []
        )
    if template is None:
        fail(f"template {campaign.template_name!r} ({campaign.language}) is not synced")
    recipient = recipients[0] if recipients else None
    if row is not None and (recipient is None or recipient.row_number != row):
        fail(f"row {row} is not a recipient of the audience (invalid, duplicate or past the end)")
    values = merge_values(recipient.variables if recipient else {}, campaign.variables)
    message = preview_message(template, values)
    problems = check_values(template.needs(), values)
    if as_json:
        print_json(
            {
                "campaign_id": campaign.id,
                "template": template.name,
                "language": template.language,
                "row": recipient.row_number if recipient else None,
                "phone": recipient.phone_e164 if recipient else None,
                "values": values,
                "message": asdict(message),
                "problems": [
                    {"variable": p.variable, "rule": str(p.rule), "detail": p.detail}
                    for p in problems
                ],
                "unsupported": template.unsupported,
            }
        )
        return
    to = f"{recipient.phone_e164} (row {recipient.row_number})" if recipient else "no recipient"
    console.print(
        Panel(
            _bubble(message),
            title=f"{template.name} ({template.language}) → {to}",
            title_align="left",
            width=min(72, console.width),
            border_style="green",
        )
    )
    if template.unsupported:
        errors.print(f"[red]not sendable:[/red] uses {', '.join(template.unsupported)}")
    for problem in problems:
        errors.print(
            f"[red]{problem.rule}[/red] {problem.variable}: {problem.detail}", highlight=False
        )


def _bubble(message: MessagePreview) -> Group:
    parts: list[Text] = []
    if message.header_media:
        link = message.header_link or "no link"
        parts.append(Text(f"[{message.header_media.lower()}] {link}", style="cyan"))
    elif message.header_text:
        parts.append(Text(message.header_text, style="bold"))
    parts.append(Text(message.body))
    if message.footer:
        parts.append(Text(message.footer, style="dim"))
    for button in message.buttons:
        icon = _BUTTON_ICONS.get(button.kind, "•")
        target = f"  {button.target}" if button.target else ""
        parts.append(Text(f"{icon} {button.text}", style="bold blue") + Text(target, style="dim"))
    return Group(*parts)
