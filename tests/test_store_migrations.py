from alembic import command
from sqlalchemy import inspect

from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.migrate import alembic_config, upgrade


def test_migrations_create_every_table_and_match_the_models(db_url: str) -> None:
    command.check(alembic_config(db_url))  # raises if the models and migrations disagree
    tables = set(inspect(Database(db_url).engine).get_table_names())
    assert {"campaigns", "messages", "recipients", "accounts", "timeline_entries"} <= tables


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
