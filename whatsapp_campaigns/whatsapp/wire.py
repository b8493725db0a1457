"""The Cloud API's JSON on the wire: the send request body, and the parsing of its answers.

Both providers go through these functions (the sandbox builds the same request and answers
with the same JSON), so an error is classified along one path only.
"""

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from whatsapp_campaigns.domain.models import Template, TemplateCategory, TemplateStatus
from whatsapp_campaigns.domain.templates import parameter_format
from whatsapp_campaigns.domain.tenancy import PhoneNumberInfo
from whatsapp_campaigns.whatsapp.error_codes import classify
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend

# Meta prefixes the message with the code: "(#132001) Template name does not exist ...".
_CODE_PREFIX = re.compile(r"^\(#\d+\)\s*")

# Template statuses and categories Meta may list that our model folds into its own.
_STATUS_ALIASES = {
    "IN_APPEAL": TemplateStatus.PENDING,
    "PENDING_DELETION": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
    "LIMIT_EXCEEDED": TemplateStatus.DISABLED,
    "ARCHIVED": TemplateStatus.DISABLED,
}
_CATEGORY_ALIASES = {
    "TRANSACTIONAL": TemplateCategory.UTILITY,
    "OTP": TemplateCategory.AUTHENTICATION,
}


def send_request_body(message: TemplateSend) -> dict[str, Any]:
    """The POST /{phone_number_id}/messages body for one template message."""
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.lstrip("+"),
        "type": "template",
        "template": {
            "name": message.template,
            "language": {"code": message.language},
            "components": message.components,
        },
        "biz_opaque_callback_data": message.biz_opaque_callback_data,
    }


# What `GET /{phone-number-id}` is asked for: enough to register and pace a sender.
PHONE_NUMBER_FIELDS = (
    "display_phone_number,verified_name,quality_rating,throughput,messaging_limit_tier"
)


def phone_number_from_response(
    http_status: int, payload: object, phone_number_id: str
) -> PhoneNumberInfo:
    """The number as Meta describes it, or the ProviderError the answer carries."""
    if not (200 <= http_status < 300 and isinstance(payload, dict)):
        raise provider_error(http_status, payload)
    display = payload.get("display_phone_number")
    if not isinstance(display, str) or not display:
        raise provider_error(http_status, payload)
    throughput = payload.get("throughput")
    level = throughput.get("level") if isinstance(throughput, dict) else None
    return PhoneNumberInfo(
        phone_number_id=str(payload.get("id") or phone_number_id),
        display_number=display,
        verified_name=_optional_str(payload.get("verified_name")),
        quality_rating=_optional_str(payload.get("quality_rating")),
        throughput_level=_optional_str(level),
        messaging_limit=_optional_str(payload.get("messaging_limit_tier")),
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def message_id_from_response(http_status: int, payload: object) -> str:
    """The accepted message's id ("wamid..."), or the ProviderError the answer carries."""
    if 200 <= http_status < 300 and isinstance(payload, dict):
        messages = payload.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            message_id = messages[0].get("id")
            if isinstance(message_id, str) and message_id:
                return message_id
    raise provider_error(http_status, payload)


def provider_error(http_status: int | None, payload: object) -> ProviderError:
    """The classified error of a Graph API answer:
    {"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}, ...}}."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        title = f"unexpected answer from WhatsApp (HTTP {http_status})"
        if http_status is not None and 200 <= http_status < 300:
            # Accepted or not? Nobody can tell: as for a timeout, the webhooks will say.
            return ProviderError(classify(None, None), title, http_status=None)
        # A 5xx without Meta's error body comes from a proxy or gateway, which may have lost
        # the answer to a send WhatsApp accepted: unknown too (found by the chaos suite:
        # sending again at once sent such messages twice).
        return ProviderError(
            classify(None, http_status),
            title,
            http_status=http_status,
            outcome_unknown=http_status is not None and http_status >= 500,
        )
    code = _int_or_none(error.get("code"))
    message = str(error.get("message") or error.get("title") or "WhatsApp error")
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return ProviderError(
        classify(code, http_status),
        _CODE_PREFIX.sub("", message) or message,
        code=code,
        http_status=http_status,
        details=str(details) if details is not None else None,
    )


def template_from_json(item: dict[str, Any]) -> Template:
    """A template as GET /{waba_id}/message_templates lists it: every component as Meta gives
    it (with its examples), its `parameter_format`, and the variables a message of it takes
    (SPEC §10 names). Kinds we do not send (carousel, flows...) are kept, to be shown."""
    components = [c for c in item.get("components") or [] if isinstance(c, dict)]
    raw_status = str(item.get("status") or "").upper()
    raw_category = str(item.get("category") or "").upper()
    template = Template(
        name=str(item["name"]),
        language=str(item.get("language") or "en"),
        category=_category(raw_category),
        status=_status(raw_status),
        components=components,
        parameter_format=parameter_format(item.get("parameter_format"), components),
    )
    template.variables = [v.name for v in template.needs()]
    return template


def next_page_cursor(payload: dict[str, Any]) -> str | None:
    """The `after` cursor of the next page, or None on the last page (no `paging.next`)."""
    paging = payload.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    if isinstance(cursors, dict) and cursors.get("after"):
        return str(cursors["after"])
    after = parse_qs(urlparse(str(paging["next"])).query).get("after")
    return after[0] if after else None


def _status(raw: str) -> TemplateStatus:
    if raw in TemplateStatus.__members__:
        return TemplateStatus(raw)
    # Unknown statuses are not sendable: treat them as disabled rather than guess approved.
    return _STATUS_ALIASES.get(raw, TemplateStatus.DISABLED)


def _category(raw: str) -> TemplateCategory:
    if raw in TemplateCategory.__members__:
        return TemplateCategory(raw)
    return _CATEGORY_ALIASES.get(raw, TemplateCategory.MARKETING)


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None
