"""Long-running processes and operations: `db upgrade`, `worker`, `api`, `sandbox`."""

import gc
import logging
import os
from typing import Annotated

import typer

from whatsapp_campaigns.cli.app import HostOption, app, console, db_app, errors, fail, guard
from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store.secrets import SecretKeyError


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the store's tables (Alembic, idempotent)."""
    from whatsapp_campaigns.store.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    console.print(f"store at {settings.database_url} is up to date")


@app.command()
def worker() -> None:
    """Run a worker: the campaign workflows, their activities, one send queue per sender."""
    from whatsapp_campaigns.workers.main import configure_logging, exit_after_shutdown, run_worker

    configure_logging()
    guard(run_worker(get_settings()))
    exit_after_shutdown()


@app.command()
def api(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the REST API, the WhatsApp webhooks and the dashboard (OpenAPI at /docs)."""
    import uvicorn

    from whatsapp_campaigns.api.app import create_app
    from whatsapp_campaigns.store.db import Database

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    db = Database(settings.database_url)
    try:
        app = create_app(settings, db)
    except SecretKeyError as error:  # a stored token the key cannot decrypt: say so, once
        db.dispose()
        fail(str(error))
    # What start-up built (modules, the app, the ORM's metadata) lives as long as the process:
    # out of the collector's sight, full collections no longer walk it again and again under
    # the webhook load (the applier's JSON decoding spent most of its time in them).
    gc.freeze()
    try:
        app.access_log = True  # the app's, without the webhook receipts (api.access_log)
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        db.dispose()


@app.command()
def sandbox(
    host: HostOption = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Where to POST the signed status webhooks, e.g. "
            "http://127.0.0.1:8000/webhooks/whatsapp (none without it)."
        ),
    ] = None,
    app_secret: Annotated[
        str | None,
        typer.Option(help="Secret that signs the webhooks (default: WHATSAPP_APP_SECRET)."),
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Messages/s of the sandbox sender (default 80).")
    ] = None,
    latency: Annotated[float, typer.Option(help="Seconds added to every answer.")] = 0.0,
    webhook_delay: Annotated[
        float, typer.Option(help="Seconds between a message's status webhooks.")
    ] = 0.3,
    accept_token_env: Annotated[
        str | None,
        typer.Option(
            help="Accept only the access token in this environment variable, as Meta accepts "
            "only the tokens it issued (default: any non-empty token)."
        ),
    ] = None,
    error_bursts_every: Annotated[
        float, typer.Option(help="Fault: a burst of 503 refusals every this many seconds.")
    ] = 0.0,
    error_burst_seconds: Annotated[
        float, typer.Option(help="Fault: length of one 503 burst, seconds.")
    ] = 3.0,
    lost_answers: Annotated[
        float,
        typer.Option(help="Fault: fraction of accepted sends answered 502 (the answer lost)."),
    ] = 0.0,
    duplicate_webhooks: Annotated[
        float, typer.Option(help="Fault: fraction of status webhooks posted twice.")
    ] = 0.0,
    reorder_webhooks: Annotated[
        float,
        typer.Option(help="Fault: fraction of webhooks held back until the next one overtook."),
    ] = 0.0,
    drop_webhooks: Annotated[
        float,
        typer.Option(help="Fault: fraction of webhooks whose first post is lost (then retried)."),
    ] = 0.0,
    webhook_delay_max: Annotated[
        float, typer.Option(help="Fault: random extra delay before each webhook, up to seconds.")
    ] = 0.0,
    webhook_retry_after: Annotated[
        float, typer.Option(help="Fault: seconds before a dropped webhook's retry.")
    ] = 5.0,
    strict_throughput: Annotated[
        bool,
        typer.Option(
            help="Refuse (130429) any send beyond the rate in a calendar second, with no "
            "one-second burst (default: a one-second token bucket)."
        ),
    ] = False,
) -> None:
    """Serve the WhatsApp Cloud API sandbox over HTTP (SPEC §7), for CAMPAIGNS_PROVIDER=cloud
    with WHATSAPP_API_BASE_URL=http://HOST:PORT and any WHATSAPP_ACCESS_TOKEN. The fault
    switches (off by default) can also be changed while it runs: PUT /sandbox/faults."""
    from pydantic import ValidationError

    from whatsapp_campaigns.whatsapp.sandbox.faults import FaultSwitches
    from whatsapp_campaigns.whatsapp.sandbox.server import run_sandbox_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        faults = FaultSwitches(
            error_bursts_every=error_bursts_every,
            error_burst_seconds=error_burst_seconds,
            lost_answers=lost_answers,
            duplicate_webhooks=duplicate_webhooks,
            reorder_webhooks=reorder_webhooks,
            drop_webhooks=drop_webhooks,
            webhook_delay_max=webhook_delay_max,
            webhook_retry_after=webhook_retry_after,
        )
    except ValidationError as error:
        problem = error.errors()[0]
        option = "--" + str(problem["loc"][0]).replace("_", "-")
        logging.getLogger(__name__).error("refused fault switch %s: %s", option, problem["msg"])
        fail(f"{option}: {problem['msg']}")
    if webhook_url is None:
        errors.print("no --webhook-url: status webhooks are not sent", highlight=False)
    run_sandbox_server(
        host,
        port,
        webhook_url=webhook_url,
        app_secret=app_secret if app_secret is not None else get_settings().whatsapp_app_secret,
        rate=rate,
        latency=latency,
        webhook_delay=webhook_delay,
        access_token=os.environ.get(accept_token_env) if accept_token_env else None,
        faults=faults,
        strict_throughput=strict_throughput,
    )


# ------------------------------------------------------------------------ embedded stack

ApiPortOption = Annotated[int, typer.Option("--port", help="Port of the API and dashboard.")]
TemporalPortOption = Annotated[
    int | None,
    typer.Option(help="Port of the Temporal dev server (default: TEMPORAL_ADDRESS's, 7233)."),
]
