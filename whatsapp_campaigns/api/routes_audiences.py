"""`/audiences`: CSV upload and the import reports (SPEC §4 rule 10)."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile, status

from whatsapp_campaigns.api.dependencies import AccountDep, DatabaseDep, SettingsDep
from whatsapp_campaigns.api.schemas import (
    ERROR_RESPONSES,
    AudienceDetail,
    AudienceImportResponse,
)
from whatsapp_campaigns.domain.models import Audience
from whatsapp_campaigns.store import audiences
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound

router = APIRouter(prefix="/audiences", tags=["audiences"], responses=ERROR_RESPONSES)

# Invalid rows in the upload's answer; GET /audiences/{id} gives the first 1,000.
_INVALID_ROWS_SHOWN = 20
_SAMPLE_SIZE = 5


async def _owned(db: Database, audience_id: str, account_id: str) -> Audience:
    audience = await asyncio.to_thread(audiences.get_audience, db, audience_id)
    if audience.account_id != account_id:
        raise NotFound(f"audience {audience_id} not found")
    return audience


def _declared_size_within_limit(request: Request, settings: SettingsDep) -> None:
    """Refuse an upload whose Content-Length is over the limit before reading any of it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.audience_max_bytes:
        raise _too_large(settings.audience_max_bytes)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"the upload is over {limit:,} bytes (CAMPAIGNS_AUDIENCE_MAX_BYTES)",
    )


@router.post(
    "",
    summary="Import a CSV audience",
    status_code=status.HTTP_201_CREATED,
    response_model=AudienceImportResponse,
    # Before the form is parsed: the dependencies of the path operation run first.
    dependencies=[Depends(_declared_size_within_limit)],
)
async def import_audience(
    db: DatabaseDep,
    settings: SettingsDep,
    account: AccountDep,
    file: Annotated[UploadFile, File(description="UTF-8 CSV with a header row.")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    phone_column: Annotated[str, Form(description="Header of the phone column.")] = "phone",
    region: Annotated[
        str | None,
        Form(description="Region (ISO 3166 alpha-2) of numbers written without +country code."),
    ] = None,
) -> AudienceImportResponse:
    """Phone numbers are normalized to E.164; invalid rows are counted and reported,
    duplicates removed, opted-out numbers kept as `suppressed`. Every other column is a
    template variable. A file that is not a UTF-8 CSV is refused (422) and nothing is stored.
    The upload is spooled to disk as it arrives and imported as a stream; over
    `CAMPAIGNS_AUDIENCE_MAX_BYTES` it is refused (413)."""
    if file.size is not None and file.size > settings.audience_max_bytes:
        raise _too_large(settings.audience_max_bytes)
    result = await asyncio.to_thread(
        audiences.import_audience_csv,
        db,
        account,
        name,
        file.file,
        phone_column=phone_column,
        default_region=region or settings.default_region,
    )
    audience = result.audience
    return AudienceImportResponse(
        audience=audience,
        valid=audience.valid,
        invalid=audience.invalid,
        duplicates=audience.duplicates,
        suppressed=audience.suppressed,
        invalid_rows=result.invalid_rows[:_INVALID_ROWS_SHOWN],
    )


@router.get("", summary="List audiences")
async def list_audiences(db: DatabaseDep, account: AccountDep) -> list[Audience]:
    """The account's audiences, newest first."""
    return await asyncio.to_thread(audiences.list_audiences, db, account)


@router.get("/{audience_id}", summary="An audience, its invalid rows and a sample")
async def get_audience(audience_id: str, db: DatabaseDep, account: AccountDep) -> AudienceDetail:
    """The counts, the first 1,000 invalid rows with their reasons, and the first recipients
    (to preview a template with real variables)."""
    audience = await _owned(db, audience_id, account)
    invalid_rows = await asyncio.to_thread(audiences.get_invalid_rows, db, audience_id)
    sample = await asyncio.to_thread(audiences.sample_recipients, db, audience_id, _SAMPLE_SIZE)
    return AudienceDetail(audience=audience, invalid_rows=invalid_rows, sample=sample)
