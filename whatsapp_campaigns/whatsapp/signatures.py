"""`X-Hub-Signature-256`: HMAC-SHA256 of the raw webhook body with the app secret.

Meta signs every webhook POST this way; the sandbox signs the same way, and the receiver
rejects anything that does not verify.
"""

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(body: bytes, app_secret: str) -> str:
    """The header value for `body`: "sha256=<hex digest>"."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def is_valid_signature(body: bytes, header_value: str | None, app_secret: str) -> bool:
    """Whether `header_value` signs `body`; constant-time, False for a missing header."""
    if not header_value or not app_secret:
        return False
    return hmac.compare_digest(sign(body, app_secret), header_value.strip())
