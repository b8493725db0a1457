"""`campaigns`: the command line for operators and scripts (SPEC §6).

`app` holds the groups; each module below registers the commands it is named for.
"""

from whatsapp_campaigns.cli import (
    accounts,
    campaigns,
    catalog,
    keys,
    preview,
    senders,
    servers,
    stack,
)
from whatsapp_campaigns.cli.app import app

__all__ = [
    "accounts",
    "app",
    "campaigns",
    "catalog",
    "keys",
    "preview",
    "senders",
    "servers",
    "stack",
]

if __name__ == "__main__":
    app()
