"""A template's `components` for one recipient, and a text preview of what they will read."""

import re
from collections.abc import Mapping
from typing import Any

from whatsapp_campaigns.domain.models import Template

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def body_components(template: Template, variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Cloud API `components` filling the template's body variables from `variables`.

    One text parameter per variable, in `template.variables` order. Named variables also carry
    "parameter_name" (Meta's named-parameter format); positional ones ("1", "2"...) do not, as
    Meta refuses names on positional templates. An empty value counts as missing: WhatsApp
    rejects empty parameters.
    """
    missing = [name for name in template.variables if not str(variables.get(name) or "").strip()]
    if missing:
        raise ValueError(
            f"template {template.name} needs variable(s) {', '.join(missing)}, "
            "missing or empty for this recipient"
        )
    if not template.variables:
        return []
    parameters: list[dict[str, Any]] = []
    for name in template.variables:
        parameter: dict[str, Any] = {"type": "text", "text": str(variables[name])}
        if not name.isdigit():
            parameter["parameter_name"] = name
        parameters.append(parameter)
    return [{"type": "body", "parameters": parameters}]


def render_preview(template: Template, variables: Mapping[str, str]) -> str:
    """The body text with the variables filled in; a missing one stays as {{name}}.

    A template known without its body text (not synced with components) previews as its name
    and the values."""
    body = next(
        (
            str(c.get("text") or "")
            for c in template.components
            if str(c.get("type", "")).upper() == "BODY"
        ),
        "",
    )
    if not body:
        values = ", ".join(f"{name}={variables.get(name, '?')}" for name in template.variables)
        return f"[{template.name}] {values}".strip()

    def fill(match: re.Match[str]) -> str:
        value = variables.get(match.group(1))
        return str(value) if value else match.group(0)

    return _PLACEHOLDER.sub(fill, body)
