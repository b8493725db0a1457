"""What an inbound WhatsApp message says about one of our template messages (SPEC §10): a tap
on a quick-reply button is an answer to the message it carries in its context, with the
button's payload."""

from typing import Any


def quick_reply_payload(message: dict[str, Any]) -> str | None:
    """The payload of a quick-reply tap on one of our messages, or None.

    A template's quick-reply button arrives as type `button` (`button.payload`, the payload we
    sent, or the button's text when we sent none); an interactive reply button as type
    `interactive` (`interactive.button_reply.id`). Only a message with a context (the message
    it answers) is a tap: the same types without one are not ours to credit.
    """
    context = message.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("id"), str):
        return None
    kind = message.get("type")
    payload: object = None
    if kind == "button":
        button = message.get("button")
        if isinstance(button, dict):
            payload = button.get("payload") or button.get("text")
    elif kind == "interactive":
        interactive = message.get("interactive")
        reply = interactive.get("button_reply") if isinstance(interactive, dict) else None
        if isinstance(reply, dict):
            payload = reply.get("id") or reply.get("title")
    return str(payload)[:1000] if isinstance(payload, str | int) and str(payload) else None
