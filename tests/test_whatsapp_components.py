"""Template `components` for one recipient, and previews."""

import pytest

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.whatsapp.components import render_preview, template_components
from whatsapp_campaigns.whatsapp.sandbox.fixtures import SANDBOX_TEMPLATES
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
