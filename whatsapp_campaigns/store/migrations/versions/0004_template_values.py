"""template values: parameter format, campaign fixed values, CSV row numbers, reply payloads

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-29 21:05:00.000000

SPEC §10.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parameter_format", sa.String(length=16), nullable=True))
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        # Existing campaigns have no fixed values: '{}' fills them, then the default goes.
        batch_op.add_column(
            sa.Column("variables", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.alter_column("variables", server_default=None)
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("row_number", sa.Integer(), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reply_payload", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("reply_payload")
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.drop_column("row_number")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("variables")
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_column("parameter_format")
