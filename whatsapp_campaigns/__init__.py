"""WhatsApp template-message campaigns on Temporal."""
