"""The `Provider` protocol: what the engine needs from WhatsApp, whoever answers (the Cloud API
or the sandbox). Chosen by the `CAMPAIGNS_PROVIDER` setting."""

from dataclasses import dataclass
from typing import Any, Protocol

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo


@dataclass(frozen=True)
class TemplateSend:
    """One template message to one recipient."""

    sender_phone_number_id: str
    to: str  # E.164, with the leading +
    template: str
    language: str
    # Cloud API template components, e.g. [{"type": "body", "parameters": [...]}].
    components: list[dict[str, Any]]
    # Our message id: WhatsApp echoes it back in status webhooks, so that an ambiguous send
    # (accepted, but our process died before storing the provider id) still reconciles.
    biz_opaque_callback_data: str


class ProviderError(Exception):
    """A send or API call that WhatsApp refused or that did not complete."""

    def __init__(
        self,
        error_class: ErrorClass,
        title: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        details: str | None = None,
        outcome_unknown: bool | None = None,
    ) -> None:
        """`outcome_unknown`: WhatsApp may have accepted the message after all (default: when
        there was no HTTP answer at all)."""
        super().__init__(f"{title} (code {code}, HTTP {http_status}): {details or ''}".strip())
        self.error_class = error_class
        self.title = title
        self.code = code
        self.http_status = http_status
        self.details = details
        self.outcome_unknown = http_status is None if outcome_unknown is None else outcome_unknown


class Provider(Protocol):
    async def send_template(self, message: TemplateSend) -> str:
        """Send one template message; return WhatsApp's message id ("wamid...").

        Raises ProviderError, classified, for every failure (HTTP errors, timeouts, refusals).
        """
        ...

    async def list_templates(self, business_account_id: str) -> list[Template]:
        """Every message template of the business account, with its approval status."""
        ...

    async def get_phone_number(self, phone_number_id: str) -> PhoneNumberInfo:
        """A business phone number as the Graph API describes it (throughput, tier...)."""
        ...

    async def aclose(self) -> None: ...
