"""What the sandbox says about a WhatsApp Business Account's numbers and templates: the Graph
API's phone-number object, and Meta's account webhooks when one of them changes.

Shapes: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/phone_number_quality_update
and .../message_template_status_update (`entry[].changes[]` with `field` naming the kind).
"""

from typing import Any


def phone_number_json(
    *,
    phone_number_id: str,
    display_number: str,
    verified_name: str,
    quality_rating: str,
    throughput_level: str,
    messaging_limit: str,
) -> dict[str, Any]:
    """`GET /{version}/{phone-number-id}` with the fields `senders add` asks for."""
    return {
        "id": phone_number_id,
        "display_phone_number": display_number,
        "verified_name": verified_name,
        "quality_rating": quality_rating,
        "throughput": {"level": throughput_level},
        "messaging_limit_tier": messaging_limit,
    }


def quality_update_body(
    *, business_account_id: str, display_number: str, event: str, current_limit: str
) -> dict[str, Any]:
    """A `phone_number_quality_update` webhook: a number's throughput or messaging limit."""
    return _account_change(
        business_account_id,
        "phone_number_quality_update",
        {
            "display_phone_number": display_number.lstrip("+"),
            "event": event,
            "current_limit": current_limit,
        },
    )


def template_status_body(
    *,
    business_account_id: str,
    template_id: str,
    name: str,
    language: str,
    event: str,
    reason: str | None,
) -> dict[str, Any]:
    """A `message_template_status_update` webhook: Meta approved, paused or disabled a
    template."""
    return _account_change(
        business_account_id,
        "message_template_status_update",
        {
            "event": event,
            "message_template_id": template_id,
            "message_template_name": name,
            "message_template_language": language,
            "reason": reason or "NONE",
        },
    )


def _account_change(business_account_id: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": business_account_id, "changes": [{"field": field, "value": value}]}],
    }
