"""The client library for services and scripts: `CampaignsClient`."""

from whatsapp_campaigns.starter.client import CampaignsClient, workflow_id
from whatsapp_campaigns.starter.errors import CampaignNotFound, CampaignRefused

__all__ = ["CampaignNotFound", "CampaignRefused", "CampaignsClient", "workflow_id"]
