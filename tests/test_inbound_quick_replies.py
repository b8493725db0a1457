"""A quick-reply tap is an answer to our message, with its payload (SPEC §10)."""

from datetime import UTC, datetime
from typing import Any

from whatsapp_campaigns.whatsapp.inbound import quick_reply_payload
from whatsapp_campaigns.whatsapp.webhook_payloads import parse_webhook

CONTEXT = {"from": "12025550100", "id": "wamid.ours"}


def button_tap(**changes: Any) -> dict[str, Any]:
    """An inbound template quick-reply tap, as WhatsApp posts it."""
    return {
        "from": "12025550110",
        "id": "wamid.tap",
        "timestamp": "1767225600",
        "type": "button",
        "context": CONTEXT,
        "button": {"payload": "no-thanks", "text": "Not interested"},
        **changes,
    }


def test_a_template_button_tap_gives_its_payload() -> None:
    assert quick_reply_payload(button_tap()) == "no-thanks"


def test_a_tap_on_a_button_sent_without_payload_gives_its_text() -> None:
    assert quick_reply_payload(button_tap(button={"text": "Not interested"})) == "Not interested"


def test_an_interactive_reply_button_gives_its_id() -> None:
    tap = button_tap(type="interactive", interactive={"button_reply": {"id": "b1", "title": "Yes"}})
    assert quick_reply_payload(tap) == "b1"


def test_a_button_message_without_context_is_no_tap_of_ours() -> None:
    assert quick_reply_payload(button_tap(context=None)) is None


def test_typed_text_has_no_payload() -> None:
    assert quick_reply_payload(button_tap(type="text", text={"body": "hi"})) is None


def test_the_webhook_receiver_keeps_the_payload_with_the_reply() -> None:
    value = {"metadata": {"phone_number_id": "sender-1"}, "messages": [button_tap()]}
    payload = {"entry": [{"changes": [{"field": "messages", "value": value}]}]}

    parsed = parse_webhook(payload, received_at=datetime.now(UTC))

    (reply,) = parsed.replies["sender-1"]
    assert (reply.context_provider_message_id, reply.payload) == ("wamid.ours", "no-thanks")
