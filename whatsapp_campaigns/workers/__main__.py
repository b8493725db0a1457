"""`python -m whatsapp_campaigns.workers`: run a worker with settings from the environment."""

import asyncio

from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.workers.main import configure_logging, exit_after_shutdown, run_worker

if __name__ == "__main__":
    configure_logging()
    asyncio.run(run_worker(get_settings()))
    exit_after_shutdown()
