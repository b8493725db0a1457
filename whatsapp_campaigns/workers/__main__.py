"""`python -m whatsapp_campaigns.workers`: run a worker with settings from the environment."""

import asyncio
import logging

from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.workers.main import exit_after_shutdown, run_worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker(get_settings()))
    exit_after_shutdown()
