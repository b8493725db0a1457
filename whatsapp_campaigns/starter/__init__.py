"""The client library for services and scripts: `CampaignsClient`."""

from whatsapp_campaigns.starter.client import CampaignsClient, workflow_id
from whatsapp_campaigns.starter.errors import (
    CampaignNotFound,
    CampaignRefused,
    CampaignUnavailable,
)

__all__ = [
    "CampaignNotFound",
    "CampaignRefused",
    "CampaignUnavailable",
    "CampaignsClient",
    "workflow_id",
]
