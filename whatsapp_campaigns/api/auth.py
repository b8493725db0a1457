"""Bearer API keys for the REST routes (SPEC §6): `Authorization: Bearer <key>`, the keys from
`CAMPAIGNS_API_KEYS` (comma separated).

Only the routers that include `require_api_key` are protected: /healthz, /metrics, /docs,
/openapi.json and /webhooks/* (signed by Meta, checked there) stay open. With no key
configured the API is open, as the dev stack runs it; `warn_if_open` says so once at startup.
"""

import hmac
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from whatsapp_campaigns.settings import Settings

log = logging.getLogger(__name__)

# auto_error=False: we answer 401 ourselves (FastAPI's own answer is a 403 without the
# WWW-Authenticate header); declaring the scheme still puts "Authorize" on /docs.
_bearer = HTTPBearer(auto_error=False, description="An API key from CAMPAIGNS_API_KEYS.")


def is_known_key(candidate: str, keys: list[str]) -> bool:
    """Constant-time in the candidate's content: every key is compared, no early exit."""
    given = candidate.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    return matched


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    settings: Settings = request.app.state.settings
    if not settings.api_keys:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        _refuse(request, "missing bearer API key")
    elif not is_known_key(credentials.credentials, settings.api_keys):
        _refuse(request, "unknown API key")


def _refuse(request: Request, reason: str) -> None:
    client = request.client.host if request.client else "?"
    log.warning("401 %s %s from %s: %s", request.method, request.url.path, client, reason)
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=reason,
        headers={"WWW-Authenticate": "Bearer"},
    )


def warn_if_open(settings: Settings) -> None:
    if not settings.api_keys:
        log.warning(
            "CAMPAIGNS_API_KEYS is empty: the REST API accepts every request without a key "
            "(fine for the dev stack, never in production)"
        )
