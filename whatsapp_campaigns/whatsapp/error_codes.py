"""Cloud API error codes → `ErrorClass` (SPEC §4 rule 6): the one table the engine's retry
decisions come from, for synchronous API errors and for `failed` status webhooks alike.

Source: Meta, "Cloud API error codes",
https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
(now also at https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
Meta advises building error handling on `code` (titles will be deprecated), hence a table of
codes; the HTTP status only decides when the code is missing or unknown.
"""

import logging
from typing import Final

from whatsapp_campaigns.domain.errors import ErrorClass

log = logging.getLogger(__name__)

_T = ErrorClass.TRANSIENT
_THROUGHPUT = ErrorClass.THROUGHPUT_LIMITED

ERROR_CLASSES: Final[dict[int, ErrorClass]] = {
    # --- authorization: the access token or the app's permissions; every send fails alike
    0: ErrorClass.AUTH,  # AuthException: unable to authenticate the app user (token expired)
    3: ErrorClass.AUTH,  # API Method: capability or permissions issue
    10: ErrorClass.AUTH,  # Permission Denied: permission not granted or revoked
    190: ErrorClass.AUTH,  # Access token has expired / invalid OAuth access token
    # --- throttling
    4: _THROUGHPUT,  # API Too Many Calls: the app reached its API call rate limit
    80007: _THROUGHPUT,  # Rate limit issues: the WhatsApp Business Account reached its limit
    130429: _THROUGHPUT,  # Rate limit hit: the number's Cloud API throughput (80 msg/s default)
    131056: ErrorClass.PAIR_LIMITED,  # (Business, Consumer) pair rate limit: same recipient
    # Spam rate limit hit: "restrictions on how many messages can be sent from this phone
    # number", the sender's quality-based messaging limit: wait hours, throttle the sender.
    131048: ErrorClass.MESSAGING_LIMITED,
    # --- integrity: the business account itself is restricted; stop the campaign
    368: ErrorClass.ACCOUNT,  # Temporarily blocked for policies violations (WABA restricted)
    130497: ErrorClass.ACCOUNT,  # Business account restricted from messaging this country
    131031: ErrorClass.ACCOUNT,  # Account has been locked (policy or verification)
    # --- the sender number / business setup
    33: ErrorClass.ACCOUNT,  # Parameter value is not valid: the business number was deleted
    131005: ErrorClass.ACCOUNT,  # Access denied: permission not granted or removed
    131037: ErrorClass.ACCOUNT,  # The number needs display name approval before sending
    131042: ErrorClass.ACCOUNT,  # Business eligibility payment issue (payment method, credit)
    131057: ErrorClass.ACCOUNT,  # Account in maintenance mode (throughput upgrade)
    133010: ErrorClass.ACCOUNT,  # Phone number not registered: the SENDER, not the recipient
    # --- the recipient
    131021: ErrorClass.INVALID_CONTACT,  # Recipient cannot be sender
    # Message undeliverable: not a WhatsApp number, terms not accepted, old app version.
    131026: ErrorClass.INVALID_CONTACT,
    # Meta never tells a business it was blocked or reported (such messages stay `sent`), so
    # no code says "blocked". 131050 is the nearest documented one: the recipient chose to stop
    # receiving (marketing) messages from this business. Not retried, ends `blocked`; the
    # sandbox answers it for +12025550102.
    131050: ErrorClass.BLOCKED,
    # "Not delivered to maintain healthy ecosystem engagement": Meta's per-USER marketing cap
    # (the recipient got too many marketing messages from businesses lately). It is about
    # that one recipient, not our sender's tier, so messaging_limited (which halts the whole
    # sender for 12 h) would stall healthy campaigns; Meta advises against quick re-sends, so
    # not pair_limited either. Not retried, ends `blocked` ("... messaging limits", seed 001).
    131049: ErrorClass.BLOCKED,
    # Re-engagement message: over 24 h since the user's last reply (free-form messages only).
    131047: ErrorClass.POLICY,
    130472: ErrorClass.POLICY,  # The user's number is part of a marketing experiment
    # --- templates: the same for every recipient until someone edits or re-approves it
    131008: ErrorClass.TEMPLATE,  # Required parameter is missing
    131009: ErrorClass.TEMPLATE,  # Parameter value is not valid
    132000: ErrorClass.TEMPLATE,  # Template param count mismatch
    132001: ErrorClass.TEMPLATE,  # Template does not exist (in that language) or not approved
    132005: ErrorClass.TEMPLATE,  # Template hydrated text too long
    132007: ErrorClass.TEMPLATE,  # Template format character policy violated
    132012: ErrorClass.TEMPLATE,  # Template parameter format mismatch
    132015: ErrorClass.TEMPLATE,  # Template is paused (low quality)
    132016: ErrorClass.TEMPLATE,  # Template is disabled (paused too often)
    # --- temporary on Meta's side
    2: _T,  # API Service: temporary downtime or overload
    131016: _T,  # Service unavailable: a service is temporarily unavailable
    133004: _T,  # Server temporarily unavailable
    # --- generic: retried up to 3 times, then `failed`
    1: ErrorClass.FAILED,  # API Unknown: invalid request or possible server error
    100: ErrorClass.FAILED,  # Invalid parameter (unsupported or misspelled request field)
    131000: ErrorClass.FAILED,  # Something went wrong (unknown error)
    131051: ErrorClass.FAILED,  # Unsupported message type
    131052: ErrorClass.FAILED,  # Media download error (a header's media URL): may pass
    131053: ErrorClass.FAILED,  # Media upload error: may pass
    135000: ErrorClass.FAILED,  # Generic user error: unknown error with the request parameters
}


def classify(code: int | None, http_status: int | None) -> ErrorClass:
    """The class of a Cloud API error: by its code when the table knows it, else by HTTP
    status (429 → throughput_limited, 5xx → transient, no answer at all → transient)."""
    if code is not None:
        known = ERROR_CLASSES.get(code)
        if known is not None:
            return known
        if 200 <= code <= 299:  # API Permission range: permission not granted or revoked
            return ErrorClass.AUTH
        log.warning(
            "unknown WhatsApp error code %s (HTTP %s): classified failed", code, http_status
        )
    if http_status is None:
        # A timeout or a broken connection: nothing was answered (a webhook error always has
        # a code, so this is a transport failure).
        return ErrorClass.FAILED if code is not None else ErrorClass.TRANSIENT
    if http_status == 429:
        return ErrorClass.THROUGHPUT_LIMITED
    if http_status >= 500 or http_status == 408:
        return ErrorClass.TRANSIENT
    if http_status == 401 and code is None:
        return ErrorClass.AUTH
    return ErrorClass.FAILED
