"""The error answers the sandbox gives, in the Cloud API's shape, with Meta's codes and titles
(see whatsapp_campaigns/whatsapp/error_codes.py for what each code means and its class)."""

import uuid
from dataclasses import dataclass
from typing import Any

from whatsapp_campaigns.domain.errors import ErrorClass


@dataclass(frozen=True)
class SandboxError:
    code: int
    http_status: int
    title: str
    details: str = ""
    error_subcode: int | None = None

    def body(self) -> dict[str, Any]:
        """{"error": {...}} exactly as the Graph API answers it."""
        error: dict[str, Any] = {
            "message": f"(#{self.code}) {self.title}",
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": f"Sbx{uuid.uuid4().hex[:20]}",
        }
        if self.error_subcode is not None:
            error["error_subcode"] = self.error_subcode
        return {"error": error}

    def webhook_error(self) -> dict[str, Any]:
        """The same error as a `failed` status webhook carries it."""
        return {
            "code": self.code,
            "title": self.title,
            "message": self.title,
            "error_data": {"details": self.details},
        }


def auth_failed() -> SandboxError:
    return SandboxError(
        190, 401, "Invalid OAuth access token - Cannot parse access token", "no bearer token"
    )


def invalid_parameter(details: str) -> SandboxError:
    return SandboxError(100, 400, "Invalid parameter", details)


def unknown_object(object_id: str, method: str = "get") -> SandboxError:
    return SandboxError(
        100,
        400,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation",
        error_subcode=33,
    )


def sender_not_registered(phone_number_id: str) -> SandboxError:
    return SandboxError(
        133010,
        400,
        "Account not registered",
        f"phone number id {phone_number_id} is not registered on the sandbox",
    )


def unsupported_type(kind: object) -> SandboxError:
    return SandboxError(131051, 400, "Unsupported message type", f"type {kind!r}: only template")


def missing_parameter(details: str) -> SandboxError:
    return SandboxError(131008, 400, "Required parameter is missing", details)


def parameter_not_valid(details: str) -> SandboxError:
    return SandboxError(131009, 400, "Parameter value is not valid", details)


def template_missing(name: str, language: str, why: str = "") -> SandboxError:
    # Meta answers 132001 both for a template missing in that language and for one not approved.
    return SandboxError(
        132001,
        404,
        "Template name does not exist in the translation",
        why or f"template name ({name}) does not exist in {language}",
    )


def template_paused(name: str) -> SandboxError:
    return SandboxError(
        132015, 400, "Template is Paused", f"template {name} is paused due to low quality"
    )


def template_disabled(name: str) -> SandboxError:
    return SandboxError(
        132016, 400, "Template is disabled", f"template {name} was paused too many times"
    )


def parameter_count(given: int, expected: int, part: str = "body") -> SandboxError:
    return SandboxError(
        132000,
        400,
        "Number of parameters does not match the expected number of params",
        f"{part}: number of localizable_params ({given}) does not match the expected number of "
        f"params ({expected})",
    )


def parameter_format(details: str) -> SandboxError:
    return SandboxError(
        132012, 400, "Parameter format does not match format in the created template", details
    )


THROUGHPUT = SandboxError(
    130429, 400, "Rate limit hit", "Cloud API message throughput has been reached."
)
PAIR_RATE = SandboxError(
    131056,
    400,
    "(Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone number "
    "to the same phone number in a short period of time.",
)
MESSAGING_LIMIT = SandboxError(
    131048,
    400,
    "Spam rate limit hit",
    "Message failed to send because there are restrictions on how many messages can be sent "
    "from this phone number.",
)
UNDELIVERABLE = SandboxError(
    131026,
    400,
    "Message undeliverable",
    "Unable to deliver message: the recipient phone number is not a WhatsApp phone number.",
)
BLOCKED = SandboxError(
    131050,
    400,
    "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business",
    "The recipient blocked or reported this business (sandbox +12025550102).",
)
TRANSIENT = SandboxError(
    2, 503, "Service temporarily unavailable", "Temporary due to downtime or being overloaded."
)

# One representative error per class, for the random failure mix and forced outcomes.
ERROR_BY_CLASS: dict[ErrorClass, SandboxError] = {
    ErrorClass.TRANSIENT: TRANSIENT,
    ErrorClass.THROUGHPUT_LIMITED: THROUGHPUT,
    ErrorClass.PAIR_LIMITED: PAIR_RATE,
    ErrorClass.MESSAGING_LIMITED: MESSAGING_LIMIT,
    ErrorClass.INVALID_CONTACT: UNDELIVERABLE,
    ErrorClass.BLOCKED: BLOCKED,
    ErrorClass.TEMPLATE: parameter_count(0, 1),
    ErrorClass.POLICY: SandboxError(
        131047,
        400,
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
    ),
    ErrorClass.AUTH: SandboxError(
        190, 401, "Error validating access token: Session has expired", "token expired"
    ),
    ErrorClass.ACCOUNT: SandboxError(131031, 403, "Account has been locked", "sandbox lock"),
    ErrorClass.FAILED: SandboxError(131000, 500, "Something went wrong", "Unknown error."),
}
