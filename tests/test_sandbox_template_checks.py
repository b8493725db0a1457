"""The sandbox checks a send's components the way Meta does (SPEC §10): 131008 a required
parameter missing, 132000 a parameter count mismatch, 132012 a parameter format mismatch."""

from typing import Any

import pytest

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.whatsapp.components import template_components
from whatsapp_campaigns.whatsapp.provider import ProviderError, TemplateSend
from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
from whatsapp_campaigns.whatsapp.sandbox.fixtures import (
    APPOINTMENT_REMINDER,
    PROMO_MEDIA,
    SANDBOX_SENDER_ID,
)
from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider

IMAGE = "https://cdn.example.com/spring.jpg"
PROMO_VALUES = {"header_media": IMAGE, "name": "Ana", "button_0": "ana-1", "button_1": "no"}
PROMO = template_components(PROMO_MEDIA, PROMO_VALUES)
REMINDER = template_components(
    APPOINTMENT_REMINDER, {"header_1": "dentist", "1": "Ana", "2": "May 3"}
)


def send(template: str, components: list[dict[str, Any]]) -> TemplateSend:
    return TemplateSend(SANDBOX_SENDER_ID, "+12025550199", template, "en", components, "m-1")


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider(SandboxEmulator())


async def refusal(provider: SandboxProvider, message: TemplateSend) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        await provider.send_template(message)
    assert raised.value.error_class is ErrorClass.TEMPLATE
    return raised.value


def without(components: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [c for c in components if c["type"] != kind]


async def test_promo_media_with_every_component_is_accepted(provider: SandboxProvider) -> None:
    assert (await provider.send_template(send("promo_media", PROMO))).startswith("wamid.")


async def test_the_positional_template_is_accepted(provider: SandboxProvider) -> None:
    message_id = await provider.send_template(send("appointment_reminder", REMINDER))
    assert message_id.startswith("wamid.")


async def test_a_missing_media_header_is_131008(provider: SandboxProvider) -> None:
    error = await refusal(provider, send("promo_media", without(PROMO, "header")))
    assert error.code == 131008 and "header" in (error.details or "")


async def test_a_missing_url_suffix_is_131008(provider: SandboxProvider) -> None:
    components = [c for c in PROMO if c.get("sub_type") != "url"]
    error = await refusal(provider, send("promo_media", components))
    assert error.code == 131008 and "button 0" in (error.details or "")


async def test_an_empty_body_text_is_131008(provider: SandboxProvider) -> None:
    components = [
        *without(PROMO, "body"),
        {"type": "body", "parameters": [{"type": "text", "text": "", "parameter_name": "name"}]},
    ]
    assert (await refusal(provider, send("promo_media", components))).code == 131008


async def test_one_body_parameter_too_many_is_132000(provider: SandboxProvider) -> None:
    extra = {"type": "body", "parameters": [{"type": "text", "text": "a"}] * 3}
    error = await refusal(provider, send("appointment_reminder", [REMINDER[0], extra]))
    assert error.code == 132000 and "(3)" in (error.details or "")


async def test_a_text_where_the_header_wants_an_image_is_132012(
    provider: SandboxProvider,
) -> None:
    header = {"type": "header", "parameters": [{"type": "text", "text": IMAGE}]}
    error = await refusal(provider, send("promo_media", [header, *PROMO[1:]]))
    assert error.code == 132012


async def test_a_named_parameter_on_a_positional_template_is_132012(
    provider: SandboxProvider,
) -> None:
    body = {
        "type": "body",
        "parameters": [
            {"type": "text", "text": "Ana", "parameter_name": "name"},
            {"type": "text", "text": "May 3"},
        ],
    }
    error = await refusal(provider, send("appointment_reminder", [REMINDER[0], body]))
    assert error.code == 132012


async def test_a_positional_parameter_on_a_named_template_is_132012(
    provider: SandboxProvider,
) -> None:
    body = {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}
    components = [PROMO[0], body, *PROMO[2:]]
    assert (await refusal(provider, send("promo_media", components))).code == 132012


async def test_a_button_of_the_wrong_sub_type_is_132012(provider: SandboxProvider) -> None:
    wrong = {**PROMO[2], "sub_type": "quick_reply"}
    components = [*PROMO[:2], wrong, PROMO[3]]
    assert (await refusal(provider, send("promo_media", components))).code == 132012
