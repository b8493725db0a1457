"""The sandbox checks a send's `components` against its template the way Meta does (SPEC §10):
131008 a required parameter missing, 132000 a parameter count mismatch, 132012 a parameter of
the wrong format (type, sub_type, parameter_name of a named or positional template)."""

from collections.abc import Mapping
from typing import Any

from whatsapp_campaigns.domain.models import Template
from whatsapp_campaigns.domain.templates import (
    ParameterFormat,
    TemplateVariable,
    VariableKind,
    buttons,
)
from whatsapp_campaigns.whatsapp.sandbox import errors
from whatsapp_campaigns.whatsapp.sandbox.errors import SandboxError

_BUTTON_SUB_TYPES = {"URL": "url", "QUICK_REPLY": "quick_reply", "COPY_CODE": "copy_code"}
_BUTTON_PARAMETER = {"url": "text", "quick_reply": "payload", "copy_code": "coupon_code"}


def check_components(template: Template, components: list[Any]) -> SandboxError | None:
    """Meta's answer to a send of `template` with these components; None when they fit."""
    given = [c for c in components if isinstance(c, Mapping)]
    needs = template.needs(unique=False)
    named = template.format is ParameterFormat.NAMED
    header_needs = [
        v for v in needs if v.kind in (VariableKind.HEADER_TEXT, VariableKind.HEADER_MEDIA)
    ]
    body_needs = [v for v in needs if v.kind is VariableKind.BODY]
    header = _parameters(given, "header")
    if header_needs and header is None:
        return errors.missing_parameter(f"header: {header_needs[0].kind} parameter is missing")
    problem = _check_part("header", header or [], header_needs, named)
    if problem is None:
        problem = _check_part("body", _parameters(given, "body") or [], body_needs, named)
    if problem is None:
        problem = _check_buttons(template, given)
    return problem


def _parameters(given: list[Mapping[str, Any]], kind: str) -> list[Any] | None:
    found = next((c for c in given if str(c.get("type", "")).lower() == kind), None)
    if found is None:
        return None
    parameters = found.get("parameters")
    return list(parameters) if isinstance(parameters, list) else []


def _check_part(
    part: str, parameters: list[Any], needs: list[TemplateVariable], named: bool
) -> SandboxError | None:
    if len(parameters) != len(needs):
        return errors.parameter_count(len(parameters), len(needs), part)
    names = {v.parameter_name for v in needs}
    for position, (parameter, variable) in enumerate(zip(parameters, needs, strict=True), 1):
        if not isinstance(parameter, Mapping):
            return errors.parameter_format(f"{part}: parameter {position} is not an object")
        if variable.kind is VariableKind.HEADER_MEDIA:
            media = (variable.media or "IMAGE").lower()
            if parameter.get("type") != media or not isinstance(parameter.get(media), Mapping):
                return errors.parameter_format(f"{part}: expected an {media} parameter")
            if not str(parameter[media].get("link") or parameter[media].get("id") or ""):
                return errors.missing_parameter(f"{part}: {media} link is missing")
            continue
        if parameter.get("type") != "text":
            return errors.parameter_format(f"{part}: parameter {position} must be text")
        name = parameter.get("parameter_name")
        if named and name not in names:
            return errors.parameter_format(
                f"{part}: parameter {position} needs a parameter_name of {sorted(map(str, names))}"
            )
        if not named and name is not None:
            return errors.parameter_format(
                f"{part}: parameter_name {name!r} on a positional template"
            )
        if not str(parameter.get("text") or "").strip():
            return errors.missing_parameter(f"{part}: parameter {position} has no text")
    return None


def _check_buttons(template: Template, given: list[Mapping[str, Any]]) -> SandboxError | None:
    defined = buttons(template.components)
    sent: dict[int, Mapping[str, Any]] = {}
    for item in given:
        if str(item.get("type", "")).lower() != "button":
            continue
        index = _index(item.get("index"))
        if index is None or index >= len(defined):
            return errors.invalid_parameter(f"button: no button at index {item.get('index')!r}")
        expected = _BUTTON_SUB_TYPES.get(str(defined[index].get("type") or "").upper())
        if expected is None or str(item.get("sub_type") or "").lower() != expected:
            return errors.parameter_format(
                f"button {index}: sub_type must be {expected or 'absent (static button)'}"
            )
        parameters = item.get("parameters")
        if not isinstance(parameters, list) or len(parameters) != 1:
            count = len(parameters) if isinstance(parameters, list) else 0
            return errors.parameter_count(count, 1, f"button {index}")
        parameter = parameters[0]
        kind = _BUTTON_PARAMETER[expected]
        if not isinstance(parameter, Mapping) or parameter.get("type") != kind:
            return errors.parameter_format(f"button {index}: expected a {kind} parameter")
        if not str(parameter.get(kind) or "").strip():
            return errors.missing_parameter(f"button {index}: {kind} is missing")
        sent[index] = item
    for variable in template.needs():
        index = variable.button_index
        if variable.required and index is not None and index not in sent:
            return errors.missing_parameter(f"button {index}: {variable.kind} parameter is missing")
    return None


def _index(value: object) -> int | None:
    try:
        index = int(str(value))
    except ValueError:
        return None
    return index if index >= 0 else None
