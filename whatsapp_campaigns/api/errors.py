"""How the REST API answers errors: the exceptions of the store, the client and the provider
become JSON `{"detail": "<reason>"}` with the status that tells the caller what to do, and
one log line each. Bad input is never a 500."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from whatsapp_campaigns.starter.errors import (
    CampaignNotFound,
    CampaignRefused,
    CampaignUnavailable,
)
from whatsapp_campaigns.store.audiences import AudienceImportError
from whatsapp_campaigns.store.errors import (
    ActionRefused,
    Conflict,
    InsufficientCredits,
    InvalidInput,
    NotFound,
)
from whatsapp_campaigns.whatsapp.provider import ProviderError

log = logging.getLogger("whatsapp_campaigns.api")

_TEMPORAL_UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


def _answer(request: Request, status_code: int, detail: str) -> JSONResponse:
    log.info("%d %s %s: %s", status_code, request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, status_code=status_code)


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    return _answer(request, 404, str(error))


async def _refused(request: Request, error: Exception) -> JSONResponse:
    invalid_values = getattr(error, "invalid_values", None)
    if invalid_values is not None:  # recipients' template values: bad input, by rule and row
        log.info("422 %s %s: %s", request.method, request.url.path, error)
        return JSONResponse(
            {"detail": str(error), "invalid_values": invalid_values}, status_code=422
        )
    # The client reports bad input as a refusal too (the store's InvalidInput for an unknown
    # sender or timezone, an invalid test-send number, missing template variables: all
    # ValueErrors); to an API caller that is a 422, not a conflict with the campaign's state.
    if isinstance(error.__cause__, ValueError):
        return _answer(request, 422, str(error))
    return _answer(request, 409, str(error))


async def _conflict(request: Request, error: Exception) -> JSONResponse:
    return _answer(request, 409, str(error))


async def _invalid(request: Request, error: Exception) -> JSONResponse:
    return _answer(request, 422, str(error))


async def _provider_failed(request: Request, error: Exception) -> JSONResponse:
    title = error.title if isinstance(error, ProviderError) else str(error)
    code = error.code if isinstance(error, ProviderError) else None
    detail = f"WhatsApp error: {title}" + (f" (code {code})" if code is not None else "")
    log.warning("502 %s %s: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, status_code=502)


async def _temporal_rpc(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, RPCError) and error.status in _TEMPORAL_UNREACHABLE:
        log.warning("503 %s %s: Temporal unreachable: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": "Temporal is unreachable; try again"}, status_code=503)
    raise error


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("503 %s %s: %s", request.method, request.url.path, error)
    return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})


async def _runtime(request: Request, error: Exception) -> JSONResponse:
    # A lazily connected Temporal client reports a refused connection this way.
    if str(error).startswith("Failed client connect"):
        log.warning("503 %s %s: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": "Temporal is unreachable; try again"}, status_code=503)
    raise error


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CampaignNotFound, _not_found)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(CampaignRefused, _refused)
    app.add_exception_handler(CampaignUnavailable, _unavailable)
    app.add_exception_handler(ActionRefused, _refused)
    app.add_exception_handler(InsufficientCredits, _refused)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(InvalidInput, _invalid)
    app.add_exception_handler(AudienceImportError, _invalid)
    app.add_exception_handler(ProviderError, _provider_failed)
    app.add_exception_handler(RPCError, _temporal_rpc)
    app.add_exception_handler(RuntimeError, _runtime)
