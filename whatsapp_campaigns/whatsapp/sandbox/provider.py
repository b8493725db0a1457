"""`SandboxProvider`: the `Provider` protocol served in-process by a `SandboxEmulator`.

It builds the same request JSON as `CloudApiProvider` and reads the emulator's answer with
the same parsing functions, so errors are classified along the one path the HTTP client uses.
"""

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.whatsapp.provider import TemplateSend
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.wire import (
    message_id_from_response,
    next_page_cursor,
    phone_number_from_response,
    provider_error,
    send_request_body,
    template_from_json,
)

# What the in-process provider "calls", for `paging.next` links only.
_IN_PROCESS_BASE = "sandbox://in-process/v21.0"
_PAGE_SIZE = 100


class SandboxProvider:
    def __init__(self, emulator: SandboxEmulator, *, access_token: str = "sandbox-token") -> None:
        self.emulator = emulator
        self._access_token = access_token

    async def send_template(self, message: TemplateSend) -> str:
        response = await self.emulator.send(
            message.sender_phone_number_id,
            send_request_body(message),
            access_token=self._access_token,
        )
        return message_id_from_response(response.status_code, response.body)

    async def list_templates(self, business_account_id: str) -> list[Template]:
        templates: list[Template] = []
        after: str | None = None
        while True:
            response = self.emulator.templates_page(
                business_account_id,
                after=after,
                limit=_PAGE_SIZE,
                next_url=f"{_IN_PROCESS_BASE}/{business_account_id}/message_templates",
            )
            if response.status_code != 200:
                raise provider_error(response.status_code, response.body)
            templates.extend(template_from_json(item) for item in response.body["data"])
            after = next_page_cursor(response.body)
            if after is None:
                return templates

    async def get_phone_number(self, phone_number_id: str) -> PhoneNumberInfo:
        response = self.emulator.phone_number(phone_number_id, access_token=self._access_token)
        return phone_number_from_response(response.status_code, response.body, phone_number_id)

    async def aclose(self) -> None:
        await self.emulator.aclose()
