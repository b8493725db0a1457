"""Task queue names. Sends run on one task queue per sender number so that Temporal's
server-side task-queue rate limit (`max_task_queue_activities_per_second`) holds the sender's
messages-per-second across every campaign and every worker (SPEC §4 rule 5)."""


def send_task_queue(base: str, sender_phone_number_id: str) -> str:
    return f"{base}-send-{sender_phone_number_id}"
