"""The provider the settings ask for (`CAMPAIGNS_PROVIDER`)."""

import logging
from typing import TYPE_CHECKING

from whatsapp_campaigns.settings import Settings
from whatsapp_campaigns.whatsapp.provider import Provider

if TYPE_CHECKING:
    from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator

log = logging.getLogger(__name__)


def make_provider(settings: Settings, *, sandbox: "SandboxEmulator | None" = None) -> Provider:
    """ "cloud": the Cloud API with the settings' URL, version and token; "sandbox": the
    in-process sandbox around `sandbox`, or a new one with the default fixtures (no webhooks)."""
    if settings.provider == "cloud":
        from whatsapp_campaigns.whatsapp.cloud import CloudApiProvider

        if not settings.whatsapp_access_token:
            # Not fatal here: every call will then fail as `auth`, with Meta's own words.
            log.warning("CAMPAIGNS_PROVIDER=cloud without WHATSAPP_ACCESS_TOKEN")
        return CloudApiProvider(
            settings.whatsapp_api_base_url,
            settings.whatsapp_api_version,
            settings.whatsapp_access_token,
        )
    from whatsapp_campaigns.whatsapp.sandbox.emulator import SandboxEmulator
    from whatsapp_campaigns.whatsapp.sandbox.provider import SandboxProvider

    return SandboxProvider(sandbox if sandbox is not None else SandboxEmulator())
