"""What a WhatsApp template needs for one recipient (SPEC §10), read from Meta's component
JSON, and the checks of the values a recipient would get, before anything is sent.

Variable names: body and header-text variables by their own names ({{name}}, or "1", "2"...
for a positional body); a positional header's {{1}} is `header_1`, as the body has its own
"1"; `header_media` for a media header's link; `button_N` for the dynamic value of the button
at index N (URL suffix, quick-reply payload, coupon code).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")

MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
SENDABLE_BUTTONS = ("QUICK_REPLY", "URL", "COPY_CODE", "PHONE_NUMBER")
# What Meta lists that we sync and show, but do not send yet.
_UNSENDABLE_COMPONENTS = {
    "CAROUSEL": "carousel",
    "LIMITED_TIME_OFFER": "limited-time offer",
}
_UNSENDABLE_BUTTONS = {
    "FLOW": "flows",
    "CATALOG": "catalog",
    "MPM": "catalog (multi-product)",
    "SPM": "catalog (single product)",
    "OTP": "one-time password",
}

# Meta's limits on one parameter's value (characters).
HEADER_TEXT_MAX = 60
BODY_PARAMETER_MAX = 1024
URL_MAX = 2000
COUPON_CODE_MAX = 15
PAYLOAD_MAX = 128

# A URL suffix: unreserved and reserved URL characters, or %-escapes; nothing else.
_URL_SAFE = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#]|%[0-9A-Fa-f]{2})*$")
_TOO_MANY_SPACES = re.compile(r" {5,}")
_WHITESPACE = re.compile(r"\s")


class ParameterFormat(StrEnum):
    NAMED = "NAMED"
    POSITIONAL = "POSITIONAL"


class VariableKind(StrEnum):
    HEADER_TEXT = "header text"
    HEADER_MEDIA = "header media link"
    BODY = "body"
    URL_SUFFIX = "URL suffix"
    PAYLOAD = "quick-reply payload"
    COUPON_CODE = "coupon code"


class Rule(StrEnum):
    """The per-recipient checks, by the names reports count them under."""

    MISSING = "missing"  # absent or empty
    TEXT_FORMAT = "text_format"  # newline, tab or more than 4 consecutive spaces
    TOO_LONG = "too_long"  # over Meta's length for that parameter
    MEDIA_LINK = "media_link"  # not a well-formed https link
    URL_SUFFIX = "url_suffix"  # characters a URL cannot carry

    @property
    def meaning(self) -> str:
        return _RULE_MEANINGS[self]


_RULE_MEANINGS = {
    Rule.MISSING: "no value (no CSV column value and no --var)",
    Rule.TEXT_FORMAT: "text with a newline, a tab or more than 4 consecutive spaces",
    Rule.TOO_LONG: "longer than WhatsApp allows",
    Rule.MEDIA_LINK: "media link not a well-formed https URL",
    Rule.URL_SUFFIX: "URL suffix with characters a URL cannot carry (spaces...)",
}


@dataclass(frozen=True)
class TemplateVariable:
    name: str
    kind: VariableKind
    required: bool = True
    media: str | None = None  # IMAGE, VIDEO or DOCUMENT for a media header
    button_index: int | None = None
    parameter_name: str | None = None  # Meta's parameter_name (named format only)

    @property
    def max_length(self) -> int:
        return _MAX_LENGTHS[self.kind]


_MAX_LENGTHS = {
    VariableKind.HEADER_TEXT: HEADER_TEXT_MAX,
    VariableKind.BODY: BODY_PARAMETER_MAX,
    VariableKind.HEADER_MEDIA: URL_MAX,
    VariableKind.URL_SUFFIX: URL_MAX,
    VariableKind.PAYLOAD: PAYLOAD_MAX,
    VariableKind.COUPON_CODE: COUPON_CODE_MAX,
}


@dataclass(frozen=True)
class Problem:
    variable: str
    rule: Rule
    detail: str


def component(components: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    """The first component of type `kind` (HEADER, BODY, FOOTER, BUTTONS), any case."""
    return next((c for c in components if str(c.get("type", "")).upper() == kind), None)


def buttons(components: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = component(components, "BUTTONS")
    items = found.get("buttons") if found else None
    return [b for b in items or [] if isinstance(b, Mapping)]


def placeholders(text: str) -> list[str]:
    """The {{...}} names of `text` in order of first use."""
    names: list[str] = []
    for name in PLACEHOLDER.findall(text):
        if name not in names:
            names.append(name)
    return names


def parameter_format(raw: object, components: Sequence[Mapping[str, Any]]) -> ParameterFormat:
    """Meta's `parameter_format`; when absent, told by the body's placeholders."""
    if str(raw or "").upper() in ParameterFormat.__members__:
        return ParameterFormat(str(raw).upper())
    body = component(components, "BODY")
    names = placeholders(str(body.get("text") or "")) if body else []
    named = any(not n.isdigit() for n in names)
    return ParameterFormat.NAMED if named or not names else ParameterFormat.POSITIONAL


def template_variables(
    components: Sequence[Mapping[str, Any]], fmt: ParameterFormat, *, unique: bool = True
) -> list[TemplateVariable]:
    """Every value a recipient's message of this template takes, in send order; with
    `unique=False`, a named variable used by both header and body is listed twice."""
    found: list[TemplateVariable] = []
    named = fmt is ParameterFormat.NAMED
    header = component(components, "HEADER")
    if header is not None:
        header_format = str(header.get("format") or "TEXT").upper()
        if header_format == "TEXT":
            for name in placeholders(str(header.get("text") or ""))[:1]:
                found.append(
                    TemplateVariable(
                        name if named else f"header_{name}",
                        VariableKind.HEADER_TEXT,
                        parameter_name=name if named else None,
                    )
                )
        elif header_format in MEDIA_FORMATS:
            found.append(
                TemplateVariable("header_media", VariableKind.HEADER_MEDIA, media=header_format)
            )
    body = component(components, "BODY")
    if body is not None:
        for name in placeholders(str(body.get("text") or "")):
            found.append(
                TemplateVariable(name, VariableKind.BODY, parameter_name=name if named else None)
            )
    for index, button in enumerate(buttons(components)):
        kind = str(button.get("type") or "").upper()
        if kind == "URL" and PLACEHOLDER.search(str(button.get("url") or "")):
            found.append(
                TemplateVariable(f"button_{index}", VariableKind.URL_SUFFIX, button_index=index)
            )
        elif kind == "QUICK_REPLY":
            # Optional: without one, WhatsApp reports the button's text as the payload.
            found.append(
                TemplateVariable(
                    f"button_{index}", VariableKind.PAYLOAD, required=False, button_index=index
                )
            )
        elif kind == "COPY_CODE":
            found.append(
                TemplateVariable(f"button_{index}", VariableKind.COUPON_CODE, button_index=index)
            )
    return _unique(found) if unique else found


def unsupported_kinds(components: Sequence[Mapping[str, Any]]) -> list[str]:
    """What in these components we cannot send yet (carousel, limited-time offer, flows,
    catalog, location header...); empty when the template is sendable."""
    kinds: list[str] = []
    for item in components:
        kind = str(item.get("type", "")).upper()
        if kind in _UNSENDABLE_COMPONENTS:
            kinds.append(_UNSENDABLE_COMPONENTS[kind])
        elif kind == "HEADER":
            header_format = str(item.get("format") or "TEXT").upper()
            if header_format not in ("TEXT", *MEDIA_FORMATS):
                kinds.append(f"{header_format.lower()} header")
    for button in buttons(components):
        kind = str(button.get("type") or "").upper()
        if kind not in SENDABLE_BUTTONS:
            kinds.append(_UNSENDABLE_BUTTONS.get(kind, f"{kind.lower() or 'unknown'} button"))
    return list(dict.fromkeys(kinds))


def template_parts(template_components: Sequence[Mapping[str, Any]]) -> str:
    """A short summary of a template's parts: "image header, body, footer, 2 buttons (url,
    quick_reply)"."""
    parts = []
    for item in template_components:
        kind = str(item.get("type", "")).upper()
        if kind == "HEADER":
            parts.append(f"{str(item.get('format') or 'TEXT').lower()} header")
        elif kind == "BUTTONS":
            kinds = [str(b.get("type") or "?").lower() for b in buttons(template_components)]
            parts.append(f"{len(kinds)} buttons ({', '.join(kinds)})")
        elif kind:
            parts.append(kind.lower().replace("_", " "))
    return ", ".join(parts) or "no components"


def merge_values(row: Mapping[str, Any], fixed: Mapping[str, str]) -> dict[str, str]:
    """The values one recipient gets: the CSV column of that name, else the campaign's fixed
    value (an empty cell falls back to the fixed value too)."""
    values = {k: str(v) for k, v in fixed.items() if v is not None and str(v) != ""}
    values.update({k: str(v) for k, v in row.items() if v is not None and str(v) != ""})
    return values


def check_values(variables: Iterable[TemplateVariable], values: Mapping[str, str]) -> list[Problem]:
    """Every rule one recipient's values break (SPEC §10); empty when they can be sent."""
    problems: list[Problem] = []
    for variable in variables:
        problem = check_value(variable, values.get(variable.name))
        if problem is not None:
            problems.append(problem)
    return problems


def check_value(variable: TemplateVariable, value: str | None) -> Problem | None:
    """The first rule this one value breaks, if any (None and blank count as missing)."""
    if value is None or not value.strip():
        if variable.required:
            return Problem(variable.name, Rule.MISSING, f"{variable.kind} is empty")
        return None
    return _check_one(variable, value)


def _check_one(variable: TemplateVariable, value: str) -> Problem | None:
    kind = variable.kind
    if kind in (VariableKind.HEADER_TEXT, VariableKind.BODY) and (
        "\n" in value or "\r" in value or "\t" in value or _TOO_MANY_SPACES.search(value)
    ):
        return Problem(variable.name, Rule.TEXT_FORMAT, f"{kind} {_shown(value)}")
    if len(value) > variable.max_length:
        return Problem(
            variable.name,
            Rule.TOO_LONG,
            f"{kind} of {len(value)} characters (at most {variable.max_length})",
        )
    if kind is VariableKind.HEADER_MEDIA and not is_https_link(value):
        return Problem(variable.name, Rule.MEDIA_LINK, f"{_shown(value)} is not an https link")
    if kind is VariableKind.URL_SUFFIX and not _URL_SAFE.match(value):
        return Problem(variable.name, Rule.URL_SUFFIX, f"{_shown(value)} is not URL-safe")
    return None


def is_https_link(value: str) -> bool:
    if _WHITESPACE.search(value):
        return False
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    host = parts.hostname or ""
    return parts.scheme == "https" and port_ok and "." in host and not host.endswith(".")


def _shown(value: str, limit: int = 40) -> str:
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return repr(text)


def _unique(found: list[TemplateVariable]) -> list[TemplateVariable]:
    """A named header variable that the body uses too is one value, sent twice."""
    seen: set[str] = set()
    unique = []
    for variable in found:
        if variable.name not in seen:
            seen.add(variable.name)
            unique.append(variable)
    return unique
