"""Template `components` for one recipient, and previews."""

import pytest

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.whatsapp.components import (
    preview_message,
    render_preview,
    template_components,
)
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    APPOINTMENT_REMINDER,
    PROMO_MEDIA,
    SANDBOX_TEMPLATES,
)
from whatsapp_campaigns.whatsapp.wire import template_from_json

ORDER_UPDATE = next(t for t in SANDBOX_TEMPLATES if t.name == "order_update")


def test_named_variables_become_text_parameters_in_template_order() -> None:
    components = template_components(ORDER_UPDATE, {"order_id": "A-7", "name": "Ana", "extra": "x"})
    assert components == [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "Ana", "parameter_name": "name"},
                {"type": "text", "text": "A-7", "parameter_name": "order_id"},
            ],
        }
    ]


def test_positional_variables_carry_no_parameter_name() -> None:
    template = Template(name="t", variables=["1", "2"])
    (body,) = template_components(template, {"1": "a", "2": "b"})
    assert body["parameters"] == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


def test_a_template_without_variables_has_no_components() -> None:
    assert template_components(Template(name="hello"), {}) == []


def test_missing_variables_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="name: body is empty; order_id: body is empty"):
        template_components(ORDER_UPDATE, {})


def test_an_empty_value_counts_as_missing() -> None:
    with pytest.raises(ValueError, match="order_id"):
        template_components(ORDER_UPDATE, {"name": "Ana", "order_id": "  "})


def test_preview_fills_the_body_text() -> None:
    preview = render_preview(ORDER_UPDATE, {"name": "Ana", "order_id": "A-7"})
    assert preview == "Hi Ana, your order A-7 has shipped."


def test_preview_keeps_placeholders_of_missing_variables() -> None:
    assert (
        render_preview(ORDER_UPDATE, {"name": "Ana"})
        == "Hi Ana, your order {{order_id}} has shipped."
    )


def test_preview_without_body_text_lists_the_values() -> None:
    template = Template(name="promo", variables=["name"])
    assert render_preview(template, {"name": "Ana"}) == "[promo] name=Ana"


def test_a_listed_template_keeps_status_category_and_components() -> None:
    item = {
        "name": "winter",
        "language": "en_US",
        "status": "PAUSED",
        "category": "UTILITY",
        "id": "1",
        "components": [{"type": "BODY", "text": "Hello {{1}}"}, {"type": "FOOTER", "text": "x"}],
    }
    template = template_from_json(item)
    assert (template.name, template.language, template.status, template.category) == (
        "winter",
        "en_US",
        "PAUSED",
        "UTILITY",
    )
    assert template.variables == ["1"] and len(template.components) == 2


def test_an_unknown_template_status_is_not_sendable() -> None:
    template = template_from_json({"name": "x", "status": "SOMETHING_NEW", "category": "MARKETING"})
    assert template.status == "DISABLED"


# ---------------------------------------------------------------- headers, media, buttons

IMAGE = "https://cdn.example.com/spring.jpg"


def test_promo_media_sends_its_image_link_named_body_and_both_button_values() -> None:
    values = {"header_media": IMAGE, "name": "Ana", "button_0": "ana-1", "button_1": "no"}
    assert template_components(PROMO_MEDIA, values) == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": IMAGE}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ana", "parameter_name": "name"}]},
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "ana-1"}],
        },
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "1",
            "parameters": [{"type": "payload", "payload": "no"}],
        },
    ]


def test_a_quick_reply_without_a_payload_sends_no_button_component() -> None:
    values = {"header_media": IMAGE, "name": "Ana", "button_0": "ana-1"}
    sent = template_components(PROMO_MEDIA, values)
    assert [c.get("sub_type") for c in sent if c["type"] == "button"] == ["url"]


def test_a_positional_template_sends_its_header_and_body_text_without_names() -> None:
    values = {"header_1": "dentist", "1": "Ana", "2": "May 3"}
    assert template_components(APPOINTMENT_REMINDER, values) == [
        {"type": "header", "parameters": [{"type": "text", "text": "dentist"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "May 3"}],
        },
    ]


def test_a_coupon_code_goes_in_a_copy_code_button() -> None:
    template = Template(
        name="coupon",
        components=[
            {"type": "BODY", "text": "Your code"},
            {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "X"}]},
        ],
    )
    assert template_components(template, {"button_0": "SAVE10"}) == [
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "0",
            "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}],
        }
    ]


def test_values_that_break_a_rule_are_refused_naming_it() -> None:
    values = {"header_media": "http://cdn.example.com/a.jpg", "name": "Ana", "button_0": "a"}
    with pytest.raises(ValueError, match=r"header_media: 'http://cdn\.example\.com/a\.jpg' is not"):
        template_components(PROMO_MEDIA, values)


def test_the_preview_shows_header_image_body_footer_and_buttons() -> None:
    preview = preview_message(PROMO_MEDIA, {"header_media": IMAGE, "name": "Ana", "button_0": "a1"})
    assert (preview.header_media, preview.header_link) == ("IMAGE", IMAGE)
    assert preview.body.startswith("Hi Ana, our spring collection")
    assert preview.footer == "Reply STOP to opt out"
    assert [(b.kind, b.text, b.target) for b in preview.buttons] == [
        ("URL", "See your picks", "https://shop.example.com/picks/a1"),
        ("QUICK_REPLY", "Not interested", None),
    ]


def test_the_preview_of_a_positional_header_fills_header_1() -> None:
    preview = preview_message(APPOINTMENT_REMINDER, {"header_1": "dentist", "1": "Ana"})
    assert preview.header_text == "Reminder: dentist"
    assert preview.body == "Hi Ana, your appointment is on {{2}}. Reply to change it."
