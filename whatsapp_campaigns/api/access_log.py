"""The API's access log without the webhook receipts that succeed.

Meta posts thousands of status webhooks a second at a top-tier number; a log line for each
would cost the receiver a good share of its time and bury every other line. Receipts are
counted in `/metrics` and `/healthz` instead; refused webhooks (4xx, 5xx) stay in the log.
"""

import logging

from whatsapp_campaigns.api.webhooks import PATH as WEBHOOK_PATH

ACCESS_LOGGER = "uvicorn.access"


class WithoutWebhookReceipts(logging.Filter):
    """Drops uvicorn's access line of a `POST /webhooks/whatsapp` answered 200."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record: (client, method, path with query, HTTP version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            _, method, path, _, status = args
            return not (method == "POST" and path == WEBHOOK_PATH and status == 200)
        return True


def quiet_webhook_receipts() -> None:
    """Install the filter on uvicorn's access logger (idempotent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, WithoutWebhookReceipts) for f in logger.filters):
        logger.addFilter(WithoutWebhookReceipts())
