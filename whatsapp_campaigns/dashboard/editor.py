"""The draft editor: new and edit forms, the audience upload with its import report, and a
preview of the message for one of the audience's first recipients."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from whatsapp_campaigns.api.dependencies import get_db, get_settings
from whatsapp_campaigns.dashboard import views
from whatsapp_campaigns.dashboard.auth import (
    DashboardSession,
    check_csrf,
)
from whatsapp_campaigns.dashboard.pages import (
    OptionalText,
    WriterSessionDep,
    campaigns_client,
    find_audience,
    int_param,
    owned_campaign,
    redirect,
    render,
    validation_message,
)
from whatsapp_campaigns.domain.models import (
    Campaign,
    CampaignDraft,
    InvalidRow,
    Recipient,
    Template,
)
from whatsapp_campaigns.domain.policy import CampaignPolicy
from whatsapp_campaigns.domain.templates import Problem, check_values, merge_values
from whatsapp_campaigns.domain.transitions import CampaignAction, allowed_actions
from whatsapp_campaigns.starter.errors import CampaignNotFound, CampaignRefused
from whatsapp_campaigns.store import audiences, catalog
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.errors import (
    InvalidInput,
)
from whatsapp_campaigns.whatsapp.components import preview_message

INVALID_ROWS_SHOWN = 50
SAMPLE_SIZE = 5

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@dataclass
class DraftForm:
    name: str = ""
    template: str = ""  # "<name>:<language>"
    sender: str = ""
    audience_id: str = ""
    timezone: str = ""
    phone_column: str = "phone"
    region: str = ""
    audience_name: str = ""
    variables: str = ""  # fixed template values, one KEY=VALUE a line
    # Policy fields, as typed (validated with the policy on save): the campaign's share of its
    # number against the other campaigns on it, and its sending partitions (docs/scaling.md).
    weight: str = "1"
    send_partitions: str = "1"

    @classmethod
    def of(cls, campaign: Campaign) -> "DraftForm":
        return cls(
            name=campaign.name,
            template=f"{campaign.template_name}:{campaign.language}",
            sender=campaign.sender_phone_number_id,
            audience_id=campaign.audience_id or "",
            timezone=campaign.timezone,
            variables="\n".join(f"{k}={v}" for k, v in campaign.variables.items()),
            weight=repr(campaign.policy.weight).removesuffix(".0"),  # "2.5", "1": as typed
            send_partitions=str(campaign.policy.send_partitions),
        )

    def policy(self, base: CampaignPolicy) -> CampaignPolicy:
        """`base` with the form's policy fields; ValidationError names a field out of range."""
        return CampaignPolicy.model_validate(
            base.model_dump()
            | {
                "weight": self.weight.strip() or "1",
                "send_partitions": self.send_partitions.strip() or "1",
            }
        )

    def fixed_values(self) -> dict[str, str]:
        """The KEY=VALUE lines (blank lines skipped); InvalidInput names a line without "="."""
        values: dict[str, str] = {}
        for number, line in enumerate(self.variables.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"fixed values, line {number}: expected KEY=VALUE")
            values[key.strip()] = value.strip()
        return values

    def template_key(self) -> tuple[str, str]:
        name, _, language = self.template.rpartition(":")
        return (name, language) if name else (self.template, "en")


async def editor_page(
    request: Request,
    session: DashboardSession,
    campaign_id: str | None,
    *,
    form: DraftForm | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    db = get_db(request)
    settings = get_settings(request)
    campaign = await owned_campaign(db, campaign_id, session) if campaign_id else None
    form = form or (DraftForm.of(campaign) if campaign else DraftForm())
    templates = await asyncio.to_thread(catalog.list_templates, db, session.account)
    senders = await asyncio.to_thread(catalog.list_senders, db, session.account)
    audience_list = await asyncio.to_thread(audiences.list_audiences, db, session.account)
    if not form.template and templates:
        approved = [t for t in templates if t.status.value == "APPROVED"]
        form.template = _key(approved[0] if approved else templates[0])
    if not form.sender and senders:
        form.sender = senders[0].phone_number_id
    selected = next((t for t in templates if _key(t) == form.template), None)
    context: dict[str, Any] = {
        "campaign": campaign,
        "form": form,
        "templates": templates,
        "template_key": _key,
        "selected_template": selected,
        "senders": senders,
        "audiences": audience_list,
        "timezones": views.timezone_names(),
        "default_region": settings.default_region,
        "error": error,
        "actions": [],
    }
    if campaign is not None:
        now = datetime.now(UTC)
        context["actions"] = allowed_actions(
            campaign.status, campaign.policy, now=now, send_at=campaign.send_at
        )
        context["prefill"] = views.send_at_fields(campaign, now)
        context.update(await _audience_context(request, campaign, selected))
    return render(request, "editor.html", context, session=session, status_code=status_code)


def _key(template: Template) -> str:
    return f"{template.name}:{template.language}"


async def _audience_context(
    request: Request, campaign: Campaign, template: Template | None
) -> dict[str, Any]:
    """The audience's import report and a preview for one of its first recipients."""
    db = get_db(request)
    audience = await find_audience(db, campaign.audience_id)
    if audience is None:  # (the page says how to add one)
        return {"audience": None, "preview": None, "problems": [], "sample": []}
    invalid_rows: list[InvalidRow] = await asyncio.to_thread(
        audiences.get_invalid_rows, db, audience.id
    )
    sample: list[Recipient] = await asyncio.to_thread(
        audiences.sample_recipients, db, audience.id, SAMPLE_SIZE
    )
    index = min(max(0, int_param(request.query_params.get("sample"), 0)), max(0, len(sample) - 1))
    recipient = sample[index] if sample else None
    preview = None
    problems: list[Problem] = []
    if template is not None and recipient is not None:
        values = merge_values(recipient.variables, campaign.variables)
        preview = preview_message(template, values)
        problems = check_values(template.needs(), values)
    return {
        "audience": audience,
        "invalid_rows": invalid_rows[:INVALID_ROWS_SHOWN],
        "sample": sample,
        "sample_index": index,
        "recipient": recipient,
        "preview": preview,
        "problems": problems,
    }


def draft_form(
    name: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    audience_id: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    phone_column: Annotated[str, Form()] = "phone",
    region: Annotated[str, Form()] = "",
    audience_name: Annotated[str, Form()] = "",
    variables: Annotated[str, Form()] = "",
    weight: Annotated[str, Form()] = "1",
    send_partitions: Annotated[str, Form()] = "1",
) -> DraftForm:
    """The draft editor's fields, posted by both "new" and "edit"."""
    return DraftForm(
        name,
        template,
        sender,
        audience_id,
        timezone,
        phone_column,
        region,
        audience_name,
        variables[:10_000],
        weight[:20],
        send_partitions[:20],
    )


DraftFormDep = Annotated[DraftForm, Depends(draft_form)]


@router.get("/campaigns/new")
async def new_campaign(request: Request, session: WriterSessionDep) -> HTMLResponse:
    return await editor_page(request, session, None)


@router.post("/campaigns/new")
async def create_campaign(
    request: Request,
    session: WriterSessionDep,
    form: DraftFormDep,
    csrf_token: OptionalText = None,
    audience_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, session, csrf_token)
    return await _save_draft(request, session, None, form, audience_file)


@router.get("/campaigns/{campaign_id}/edit")
async def edit_campaign_form(
    request: Request, campaign_id: str, session: WriterSessionDep
) -> Response:
    campaign = await owned_campaign(get_db(request), campaign_id, session)
    now = datetime.now(UTC)
    if CampaignAction.EDIT not in allowed_actions(
        campaign.status, campaign.policy, now=now, send_at=campaign.send_at
    ):
        return redirect(
            request,
            f"/dashboard/campaigns/{campaign_id}",
            notice=f"The campaign is {campaign.status.value}: its content is locked.",
            kind="error",
        )
    return await editor_page(request, session, campaign_id)


@router.post("/campaigns/{campaign_id}/edit")
async def edit_campaign(
    request: Request,
    campaign_id: str,
    session: WriterSessionDep,
    form: DraftFormDep,
    csrf_token: OptionalText = None,
    audience_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    check_csrf(request, session, csrf_token)
    await owned_campaign(get_db(request), campaign_id, session)
    return await _save_draft(request, session, campaign_id, form, audience_file)


async def _save_draft(
    request: Request,
    session: DashboardSession,
    campaign_id: str | None,
    form: DraftForm,
    upload: UploadFile | None,
) -> Response:
    """Import the uploaded CSV (if any), then create or edit the draft with it."""
    db = get_db(request)
    settings = get_settings(request)
    notices = []
    try:
        if upload is not None and upload.filename:
            result = await asyncio.to_thread(
                audiences.import_audience_csv,
                db,
                session.account,
                form.audience_name.strip() or f"{form.name.strip() or 'campaign'} audience",
                upload.file,
                phone_column=form.phone_column.strip() or "phone",
                default_region=form.region.strip().upper() or settings.default_region,
            )
            imported = result.audience
            form.audience_id = imported.id
            notices.append(
                f"Audience imported: {imported.valid:,} valid, {imported.invalid:,} invalid, "
                f"{imported.duplicates:,} duplicates, {imported.suppressed:,} opted out."
            )
        template_name, language = form.template_key()
        policy = CampaignPolicy()
        if campaign_id is not None:
            policy = (await owned_campaign(db, campaign_id, session)).policy
        draft = CampaignDraft(
            name=form.name.strip(),
            template_name=template_name,
            language=language or "en",
            sender_phone_number_id=form.sender,
            audience_id=form.audience_id or None,
            timezone=form.timezone.strip() or "UTC",
            variables=form.fixed_values(),
            policy=form.policy(policy),
        )
        client = await campaigns_client(request)
        if campaign_id is None:
            saved = await client.create_draft(draft, account_id=session.account, by=session.actor)
        else:
            saved = await client.edit_draft(campaign_id, draft, by=session.actor)
    except ValidationError as error:
        message = f"Not saved: {validation_message(error)}"
        return await editor_page(
            request, session, campaign_id, form=form, error=message, status_code=422
        )
    except (AudienceImportError, CampaignRefused, CampaignNotFound, InvalidInput) as error:
        message = f"Not saved: {error}"
        return await editor_page(
            request, session, campaign_id, form=form, error=message, status_code=422
        )
    notices.insert(0, "Draft saved." if campaign_id is None else "Changes saved.")
    return redirect(request, f"/dashboard/campaigns/{saved.id}/edit", notice=" ".join(notices))
