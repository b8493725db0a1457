"""The API's access log, without the webhook receipts that succeed.

Meta posts thousands of status webhooks a second at a top-tier number; a log line for each
would bury every other line. Receipts are counted in `/metrics` and `/healthz` instead; refused
webhooks (4xx, 5xx) stay in the log. The app writes the lines itself (`CampaignsAPI`, when
`campaigns api` asks for them, uvicorn's own access log off): uvicorn's builds a log record
for every request before a filter can drop it, a tenth of a receipt's time (py-spy).
"""

import logging

from starlette.types import Message, Scope, Send
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

ACCESS_LOGGER = "whatsapp_campaigns.access"

log = logging.getLogger(ACCESS_LOGGER)


def logged(scope: Scope, send: Send, *, quiet_success: bool = False) -> Send:
    """`send`, writing the request's access line as uvicorn does when the answer starts;
    none for a 200 when `quiet_success`."""

    async def send_logged(message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if not (quiet_success and status == 200) and log.isEnabledFor(logging.INFO):
                log.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(scope),  # type: ignore[arg-type]
                    scope["method"],
                    get_path_with_query_string(scope),  # type: ignore[arg-type]
                    scope["http_version"],
                    status,
                )
        await send(message)

    return send_logged
