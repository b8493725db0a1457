"""Task queue names. Sends run on one task queue per sender number, whose rate the Temporal
server holds (set with UpdateTaskQueueConfig by the workers, `workers/queue_rates.py`), so the
sender's messages-per-second holds across every campaign and every worker (SPEC §4 rule 5, §11).
On that queue each send's priority key puts utility/authentication before marketing and its
fairness key (the campaign) shares the number between campaigns (`workflows/dispatch.py`)."""


def send_task_queue(base: str, sender_phone_number_id: str) -> str:
    return f"{base}-send-{sender_phone_number_id}"
