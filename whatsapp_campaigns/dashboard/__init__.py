"""The web dashboard (SPEC §6), served by the API under /dashboard: server-rendered Jinja2
pages, one stylesheet and one small vanilla script shipped in the package (no build step,
nothing fetched at run time)."""

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from whatsapp_campaigns.dashboard import (
    campaign_list,
    campaign_page,
    editor,
    pages,
    report,
    signin,
)
from whatsapp_campaigns.dashboard.auth import CsrfFailed, LoginRequired, Signer, read_session
from whatsapp_campaigns.settings import Settings

__all__ = ["mount_dashboard"]


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    app.state.dashboard_signer = Signer(settings.dashboard_secret)
    app.state.dashboard_templates = pages.build_templates()
    app.mount("/dashboard/static", StaticFiles(directory=pages.STATIC_DIR), name="dashboard-static")
    # The editor before the campaign page: GET /campaigns/new is not a campaign id.
    for module in (signin, campaign_list, editor, campaign_page, report):
        app.include_router(module.router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfFailed, _csrf_failed)
    app.add_exception_handler(pages.PageNotFound, _page_not_found)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)


def _wants_fragment(request: Request) -> bool:
    return request.headers.get("x-requested-with") == "fetch"


async def _login_required(request: Request, error: Exception) -> Response:
    if _wants_fragment(request) or request.method != "GET":
        return JSONResponse({"detail": "sign in to the dashboard"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/dashboard/login?next={quote(target, safe='')}", status_code=303)


async def _csrf_failed(request: Request, error: Exception) -> HTMLResponse:
    return pages.render(
        request,
        "error.html",
        {"title": "Request refused", "message": str(error)},
        session=read_session(request),
        status_code=403,
    )


async def _page_not_found(request: Request, error: Exception) -> HTMLResponse:
    return pages.render(
        request,
        "error.html",
        {"title": "Not found", "message": str(error)},
        session=read_session(request),
        status_code=404,
    )
