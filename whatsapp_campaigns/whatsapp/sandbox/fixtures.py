"""What the sandbox serves, so that demos, tests and scripts can rely on it (SPEC §7)."""

from typing import Any

from whatsapp_campaigns.domain.models import Template, TemplateCategory, TemplateStatus

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


SANDBOX_TEMPLATES: list[Template] = [
    Template(
        name="order_update",
        language="en",
        category=TemplateCategory.UTILITY,
        status=TemplateStatus.APPROVED,
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
        components=[_body("Hi {{name}}, a new offer is waiting for you.", {"name": "Ana"})],
    ),
    Template(
        name="promo_paused",
        language="en",
        category=TemplateCategory.MARKETING,
        status=TemplateStatus.PAUSED,
        variables=["name"],
        components=[_body("Hi {{name}}, last chance for this week's offer.", {"name": "Ana"})],
    ),
]
