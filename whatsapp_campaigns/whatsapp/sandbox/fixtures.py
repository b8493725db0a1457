"""What the sandbox serves, so that demos, tests and scripts can rely on it (SPEC §7)."""

from typing import Any

from whatsapp_campaigns.domain.models import Template, TemplateCategory, TemplateStatus
from whatsapp_campaigns.domain.templates import ParameterFormat

SANDBOX_BUSINESS_ACCOUNT_ID = "sandbox"
SANDBOX_SENDER_ID = "sandbox-sender-1"
SANDBOX_DISPLAY_NUMBER = "+12025550100"
SANDBOX_SENDER_RATE = 80  # messages per second, the Cloud API default
SANDBOX_SENDER_TIER = 100_000  # unique recipients per rolling 24 h
SANDBOX_VERIFIED_NAME = "Sandbox Store"
# A second number, upgraded by Meta to high throughput (1,000 msg/s).
SANDBOX_HIGH_SENDER_ID = "sandbox-sender-high"
SANDBOX_HIGH_DISPLAY_NUMBER = "+12025550150"
SANDBOX_HIGH_SENDER_RATE = 1000
# The settings' default WHATSAPP_APP_SECRET, so that the dev stack's webhooks verify.
SANDBOX_APP_SECRET = "sandbox-app-secret"


def ordinary_numbers(n: int, start: int = 1000) -> list[str]:
    """`n` valid US numbers outside the magic +1 202 555 01xx range, which the sandbox accepts,
    delivers and reads: +1 202 555 1000 onwards, then the exchanges after 555 (enough for
    millions of recipients). Tests and benches build their audiences from them."""
    numbers = []
    for k in range(start, start + n):
        exchange, line = divmod(k, 10_000)
        numbers.append(f"+1202{555 + exchange}{line:04d}")
    return numbers


def _body(text: str, examples: dict[str, str]) -> dict[str, Any]:
    """A BODY component as Meta lists it for a named-parameter template."""
    component: dict[str, Any] = {"type": "BODY", "text": text}
    if examples:
        component["example"] = {
            "body_text_named_params": [
                {"param_name": name, "example": value} for name, value in examples.items()
            ]
        }
    return component


PROMO_IMAGE_EXAMPLE = "https://sandbox.example.com/media/spring-collection.jpg"


def _rich(
    name: str,
    category: TemplateCategory,
    fmt: ParameterFormat,
    components: list[dict[str, Any]],
) -> Template:
    """A template with every component Meta lists; its variables told by them."""
    template = Template(
        name=name,
        language="en",
        category=category,
        status=TemplateStatus.APPROVED,
        components=components,
        parameter_format=fmt,
    )
    template.variables = [v.name for v in template.needs()]
    return template


# SPEC §10: an image header, a named body, a URL button with a dynamic suffix, a quick reply.
PROMO_MEDIA = _rich(
    "promo_media",
    TemplateCategory.MARKETING,
    ParameterFormat.NAMED,
    [
        {
            "type": "HEADER",
            "format": "IMAGE",
            "example": {"header_handle": [PROMO_IMAGE_EXAMPLE]},
        },
        _body(
            "Hi {{name}}, our spring collection is here. Your picks are waiting.", {"name": "Ana"}
        ),
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "See your picks",
                    "url": "https://shop.example.com/picks/{{1}}",
                    "example": ["https://shop.example.com/picks/ana-42"],
                },
                {"type": "QUICK_REPLY", "text": "Not interested"},
            ],
        },
    ],
)

# A positional template: a text header with its own {{1}} (header_1), a body of {{1}} {{2}}.
APPOINTMENT_REMINDER = _rich(
    "appointment_reminder",
    TemplateCategory.UTILITY,
    ParameterFormat.POSITIONAL,
    [
        {
            "type": "HEADER",
            "format": "TEXT",
            "text": "Reminder: {{1}}",
            "example": {"header_text": ["dentist"]},
        },
        {
            "type": "BODY",
            "text": "Hi {{1}}, your appointment is on {{2}}. Reply to change it.",
            "example": {"body_text": [["Ana", "May 3 at 10:00"]]},
        },
        {"type": "FOOTER", "text": "Clinic Example"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+12025550100"},
                {"type": "QUICK_REPLY", "text": "Confirm"},
            ],
        },
    ],
)

SANDBOX_TEMPLATES: list[Template] = [
    Template(
        name="order_update",
        language="en",
        category=TemplateCategory.UTILITY,
        status=TemplateStatus.APPROVED,
        parameter_format=ParameterFormat.NAMED,
        variables=["name", "order_id"],
        components=[
            _body(
                "Hi {{name}}, your order {{order_id}} has shipped.",
                {"name": "Ana", "order_id": "A-1042"},
            )
        ],
    ),
    Template(
        name="spring_sale",
        language="en",
        category=TemplateCategory.MARKETING,
        status=TemplateStatus.APPROVED,
        variables=["name"],
        parameter_format=ParameterFormat.NAMED,
        components=[
            _body("Hi {{name}}, our spring sale starts today: 20% off everything.", {"name": "Ana"})
        ],
    ),
    Template(
        name="promo_pending",
        language="en",
        category=TemplateCategory.MARKETING,
        status=TemplateStatus.PENDING,
        variables=["name"],
        parameter_format=ParameterFormat.NAMED,
        components=[_body("Hi {{name}}, a new offer is waiting for you.", {"name": "Ana"})],
    ),
    Template(
        name="promo_paused",
        language="en",
        category=TemplateCategory.MARKETING,
        status=TemplateStatus.PAUSED,
        variables=["name"],
        parameter_format=ParameterFormat.NAMED,
        components=[_body("Hi {{name}}, last chance for this week's offer.", {"name": "Ana"})],
    ),
    PROMO_MEDIA,
    APPOINTMENT_REMINDER,
]
