"""A template's `components` for one recipient (SPEC §10), and the message as they will see it.

Values are looked up by the SPEC §10 variable names (see `domain.templates`): header text,
`header_media`, body (named or positional) and `button_N`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.templates import (
    PLACEHOLDER,
    TemplateVariable,
    VariableKind,
    buttons,
    check_values,
    component,
)


def template_components(template: Template, values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The Cloud API `components` of one message of `template` with these values.

    Named parameters carry "parameter_name" (Meta's named format); positional ones do not, as
    Meta refuses names on positional templates. Raises ValueError naming every rule the values
    break (a required one missing or empty, a newline in a text parameter...): such a message
    would be refused by WhatsApp.
    """
    return PreparedTemplate.of(template).components(values)


@dataclass(frozen=True)
class PreparedTemplate:
    """A template with its variables read once: the send path builds thousands of messages of
    one template, and reading its components for each cost more than building the message."""

    template: Template
    needs: tuple[TemplateVariable, ...]  # in send order, a repeated one repeated
    checked: tuple[TemplateVariable, ...]  # each variable once, for the checks

    @classmethod
    def of(cls, template: Template) -> "PreparedTemplate":
        return cls(template, tuple(template.needs(unique=False)), tuple(template.needs()))

    def components(self, values: Mapping[str, str]) -> list[dict[str, Any]]:
        """`template_components` of this template."""
        template, needs = self.template, self.needs
        problems = check_values(self.checked, values)
        if problems:
            detail = "; ".join(f"{p.variable}: {p.detail}" for p in problems)
            raise ValueError(f"template {template.name} cannot be sent with these values: {detail}")
        result: list[dict[str, Any]] = []
        header = [_parameter(v, values[v.name]) for v in needs if v.kind in _HEADER_KINDS]
        if header:
            result.append({"type": "header", "parameters": header})
        body = [_parameter(v, values[v.name]) for v in needs if v.kind is VariableKind.BODY]
        if body:
            result.append({"type": "body", "parameters": body})
        for variable in needs:
            if variable.button_index is None or variable.name not in values:
                continue  # a quick reply without its own payload sends none (its text is used)
            result.append(
                {
                    "type": "button",
                    "sub_type": _BUTTON_SUB_TYPES[variable.kind],
                    "index": str(variable.button_index),
                    "parameters": [_parameter(variable, values[variable.name])],
                }
            )
        return result


_HEADER_KINDS = (VariableKind.HEADER_TEXT, VariableKind.HEADER_MEDIA)
_BUTTON_SUB_TYPES = {
    VariableKind.URL_SUFFIX: "url",
    VariableKind.PAYLOAD: "quick_reply",
    VariableKind.COUPON_CODE: "copy_code",
}


def _parameter(variable: TemplateVariable, value: str) -> dict[str, Any]:
    match variable.kind:
        case VariableKind.HEADER_MEDIA:
            media = (variable.media or "IMAGE").lower()
            return {"type": media, media: {"link": value}}
        case VariableKind.PAYLOAD:
            return {"type": "payload", "payload": value}
        case VariableKind.COUPON_CODE:
            return {"type": "coupon_code", "coupon_code": value}
        case _:
            parameter: dict[str, Any] = {"type": "text", "text": value}
            if variable.parameter_name is not None:
                parameter["parameter_name"] = variable.parameter_name
            return parameter


@dataclass(frozen=True)
class PreviewButton:
    kind: str  # QUICK_REPLY, URL, COPY_CODE, PHONE_NUMBER...
    text: str
    target: str | None = None  # the URL (suffix filled in), phone number or coupon code


@dataclass(frozen=True)
class MessagePreview:
    """What the recipient sees: a missing value stays as its {{placeholder}}."""

    header_text: str | None = None
    header_media: str | None = None  # IMAGE, VIDEO or DOCUMENT
    header_link: str | None = None
    body: str = ""
    footer: str | None = None
    buttons: list[PreviewButton] = field(default_factory=list)


def preview_message(template: Template, values: Mapping[str, str]) -> MessagePreview:
    """The message as the recipient would see it, from the template's components."""
    components = template.components
    if not components:  # known without its texts: its name and the values
        shown = ", ".join(f"{name}={values.get(name, '?')}" for name in template.variables)
        return MessagePreview(body=f"[{template.name}] {shown}".strip())
    header = component(components, "HEADER")
    header_text = header_media = header_link = None
    if header is not None:
        header_format = str(header.get("format") or "TEXT").upper()
        if header_format == "TEXT":
            prefix = "" if template.format == "NAMED" else "header_"
            header_text = _fill(str(header.get("text") or ""), values, prefix)
        else:
            header_media = header_format
            header_link = values.get("header_media") or _example_link(header)
    body = component(components, "BODY")
    footer = component(components, "FOOTER")
    shown_buttons = []
    for index, button in enumerate(buttons(components)):
        kind = str(button.get("type") or "").upper()
        target = None
        if kind == "URL":
            url = str(button.get("url") or "")
            suffix = values.get(f"button_{index}")
            target = PLACEHOLDER.sub(suffix, url) if suffix else url
        elif kind == "PHONE_NUMBER":
            target = str(button.get("phone_number") or "")
        elif kind == "COPY_CODE":
            target = values.get(f"button_{index}") or str(button.get("example") or "")
        shown_buttons.append(PreviewButton(kind, str(button.get("text") or kind.title()), target))
    return MessagePreview(
        header_text=header_text,
        header_media=header_media,
        header_link=header_link,
        body=_fill(str(body.get("text") or ""), values) if body else "",
        footer=str(footer.get("text") or "") if footer else None,
        buttons=shown_buttons,
    )


def render_preview(template: Template, values: Mapping[str, str]) -> str:
    """The message as plain text (header, body, footer, buttons on their own lines)."""
    preview = preview_message(template, values)
    lines = []
    if preview.header_text:
        lines.append(preview.header_text)
    elif preview.header_media:
        lines.append(f"[{preview.header_media.lower()}: {preview.header_link or 'no link'}]")
    lines.append(preview.body)
    if preview.footer:
        lines.append(preview.footer)
    lines.extend(f"[{b.text}]" for b in preview.buttons)
    return "\n".join(lines)


def _fill(text: str, values: Mapping[str, str], prefix: str = "") -> str:
    def fill(match: Any) -> str:
        value = values.get(prefix + match.group(1))
        return str(value) if value else str(match.group(0))

    return PLACEHOLDER.sub(fill, text)


def _example_link(header: Mapping[str, Any]) -> str | None:
    example = header.get("example")
    handles = example.get("header_handle") if isinstance(example, Mapping) else None
    return str(handles[0]) if isinstance(handles, list) and handles else None
