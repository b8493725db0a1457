"""The campaign search attributes of SPEC §5, upserted by CampaignWorkflow on every status
change, so operators can filter in the Temporal UI (`CampaignStatus="sending"`)."""

from temporalio.common import SearchAttributeKey

CAMPAIGN_STATUS = SearchAttributeKey.for_keyword("CampaignStatus")
SENDER_PHONE_NUMBER_ID = SearchAttributeKey.for_keyword("SenderPhoneNumberId")
SCHEDULED_AT = SearchAttributeKey.for_datetime("ScheduledAt")

ALL_SEARCH_ATTRIBUTES = (CAMPAIGN_STATUS, SENDER_PHONE_NUMBER_ID, SCHEDULED_AT)
