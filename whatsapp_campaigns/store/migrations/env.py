"""Alembic environment: migrates the URL given by `migrate.upgrade` or CAMPAIGNS_DATABASE_URL."""

from alembic import context

from whatsapp_campaigns.settings import get_settings
from whatsapp_campaigns.store.db import make_engine
from whatsapp_campaigns.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
