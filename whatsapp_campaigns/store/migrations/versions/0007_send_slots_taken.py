"""send slots: how many slots the latest statement on a row took (a group takes several)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("send_slots") as batch:
        batch.add_column(sa.Column("taken", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("send_slots") as batch:
        batch.drop_column("taken")
