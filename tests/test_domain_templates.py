"""What a template takes for one recipient (SPEC §10) and the checks of those values."""

import pytest

from whatsapp_campaigns.domain.templates import (
    ParameterFormat,
    Rule,
    VariableKind,
    check_values,
    merge_values,
    parameter_format,
    template_variables,
    unsupported_kinds,
)
from whatsapp_campaigns.whatsapp.sandbox.fixtures import APPOINTMENT_REMINDER, PROMO_MEDIA
from whatsapp_campaigns.whatsapp.wire import template_from_json

PROMO_OK = {"header_media": "https://cdn.example.com/a.jpg", "name": "Ana", "button_0": "ana-1"}


def rules(values: dict[str, str]) -> dict[str, Rule]:
    return {p.variable: p.rule for p in check_values(PROMO_MEDIA.needs(), values)}


# ------------------------------------------------------------------------------ variables


def test_promo_media_takes_a_media_link_a_named_body_variable_and_its_button_values() -> None:
    needs = PROMO_MEDIA.needs()
    assert [(v.name, v.kind, v.required) for v in needs] == [
        ("header_media", VariableKind.HEADER_MEDIA, True),
        ("name", VariableKind.BODY, True),
        ("button_0", VariableKind.URL_SUFFIX, True),
        ("button_1", VariableKind.PAYLOAD, False),
    ]
    assert needs[0].media == "IMAGE"


def test_a_positional_header_variable_is_header_1_beside_the_body_s_own_1() -> None:
    assert APPOINTMENT_REMINDER.variables == ["header_1", "1", "2", "button_1"]
    assert APPOINTMENT_REMINDER.format is ParameterFormat.POSITIONAL


def test_a_named_variable_in_header_and_body_is_one_value() -> None:
    components = [
        {"type": "HEADER", "format": "TEXT", "text": "For {{name}}"},
        {"type": "BODY", "text": "Hi {{name}}, code {{code}}"},
    ]
    needs = template_variables(components, ParameterFormat.NAMED)
    assert [v.name for v in needs] == ["name", "code"]
    assert len(template_variables(components, ParameterFormat.NAMED, unique=False)) == 3


def test_a_coupon_code_button_needs_its_value_and_a_static_url_button_none() -> None:
    components = [
        {"type": "BODY", "text": "Sale"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Shop", "url": "https://shop.example.com"},
                {"type": "COPY_CODE", "example": "SAVE10"},
                {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+12025550100"},
            ],
        },
    ]
    needs = template_variables(components, ParameterFormat.NAMED)
    assert [(v.name, v.kind) for v in needs] == [("button_1", VariableKind.COUPON_CODE)]


def test_parameter_format_falls_back_to_the_body_placeholders() -> None:
    assert parameter_format(None, [{"type": "BODY", "text": "{{1}} {{2}}"}]) == "POSITIONAL"
    assert parameter_format(None, [{"type": "BODY", "text": "{{name}}"}]) == "NAMED"
    assert parameter_format("positional", []) == "POSITIONAL"


def test_a_synced_template_keeps_its_format_components_and_variables() -> None:
    template = template_from_json(
        {
            "name": "promo",
            "status": "APPROVED",
            "category": "MARKETING",
            "parameter_format": "NAMED",
            "components": PROMO_MEDIA.components,
        }
    )
    assert template.parameter_format is ParameterFormat.NAMED
    assert template.components == PROMO_MEDIA.components
    assert template.variables == ["header_media", "name", "button_0", "button_1"]


# ---------------------------------------------------------------------- unsupported kinds


@pytest.mark.parametrize(
    ("component", "kind"),
    [
        ({"type": "CAROUSEL", "cards": []}, "carousel"),
        ({"type": "LIMITED_TIME_OFFER", "limited_time_offer": {}}, "limited-time offer"),
        ({"type": "BUTTONS", "buttons": [{"type": "FLOW", "text": "Book"}]}, "flows"),
        ({"type": "BUTTONS", "buttons": [{"type": "CATALOG", "text": "View"}]}, "catalog"),
        ({"type": "HEADER", "format": "LOCATION"}, "location header"),
    ],
)
def test_kinds_we_do_not_send_are_named(component: dict[str, object], kind: str) -> None:
    assert unsupported_kinds([{"type": "BODY", "text": "x"}, component]) == [kind]


def test_text_media_and_the_four_button_kinds_are_sendable() -> None:
    assert unsupported_kinds(PROMO_MEDIA.components) == []
    assert unsupported_kinds(APPOINTMENT_REMINDER.components) == []


# ------------------------------------------------------------------------------- values


def test_the_csv_value_wins_and_the_fixed_value_fills_what_it_leaves_out() -> None:
    row = {"name": "Ana", "button_0": ""}
    fixed = {"name": "Friend", "button_0": "spring", "header_media": "https://x.example/a.jpg"}
    assert merge_values(row, fixed) == {
        "name": "Ana",
        "button_0": "spring",
        "header_media": "https://x.example/a.jpg",
    }


def test_good_values_break_no_rule() -> None:
    assert rules(PROMO_OK) == {}


def test_a_missing_or_blank_required_value_is_missing_but_an_optional_payload_is_not() -> None:
    assert rules({**PROMO_OK, "name": "  "}) == {"name": Rule.MISSING}
    assert rules({k: v for k, v in PROMO_OK.items() if k != "button_0"}) == {
        "button_0": Rule.MISSING
    }


@pytest.mark.parametrize("text", ["Ana\nBo", "Ana\tBo", "Ana     Bo"])
def test_newlines_tabs_and_five_spaces_break_the_text_format(text: str) -> None:
    assert rules({**PROMO_OK, "name": text}) == {"name": Rule.TEXT_FORMAT}


def test_four_spaces_in_a_row_are_allowed() -> None:
    assert rules({**PROMO_OK, "name": "Ana    Bo"}) == {}


def test_a_header_text_variable_over_60_characters_is_too_long() -> None:
    needs = APPOINTMENT_REMINDER.needs()
    values = {"header_1": "x" * 61, "1": "Ana", "2": "May 3"}
    (problem,) = check_values(needs, values)
    assert (problem.variable, problem.rule) == ("header_1", Rule.TOO_LONG)
    assert check_values(needs, {**values, "header_1": "x" * 60}) == []


@pytest.mark.parametrize(
    "link",
    ["http://cdn.example.com/a.jpg", "cdn.example.com/a.jpg", "https://", "https://cdn a.jpg"],
)
def test_a_media_link_must_be_a_well_formed_https_url(link: str) -> None:
    assert rules({**PROMO_OK, "header_media": link}) == {"header_media": Rule.MEDIA_LINK}


@pytest.mark.parametrize("suffix", ["ana 1", "ana\u00e9", "50%off"])
def test_a_url_suffix_must_be_url_safe(suffix: str) -> None:
    assert rules({**PROMO_OK, "button_0": suffix}) == {"button_0": Rule.URL_SUFFIX}


def test_a_url_suffix_may_carry_a_path_query_and_escapes() -> None:
    assert rules({**PROMO_OK, "button_0": "ana/1?utm=wa&x=%20y"}) == {}
