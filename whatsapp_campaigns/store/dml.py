"""Data-changing statements run the same way on SQLite and PostgreSQL.

Conditional `UPDATE ... WHERE <guard>` and `INSERT ... ON CONFLICT` are how the store stays
correct under concurrency without read-then-write races: the row count says who won.
"""

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from whatsapp_campaigns.store.models import Base


def rowcount(session: Session, statement: Executable) -> int:
    """Run an INSERT/UPDATE/DELETE and return how many rows it matched (psycopg reports it
    for an INSERT only when asked to keep it)."""
    result = cast(
        CursorResult[Any],
        session.execute(statement, execution_options={"preserve_rowcount": True}),
    )
    return int(result.rowcount)


def insert_if_absent(
    session: Session, model: type[Base], values: dict[str, Any], *, keys: Sequence[str]
) -> bool:
    """Insert one row unless a row with the same `keys` exists; True when it was inserted."""
    statement = _insert(session, model).values(values).on_conflict_do_nothing(index_elements=keys)
    return rowcount(session, statement) == 1


def upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert `rows`, or update the `update` columns of those whose `keys` already exist.

    Rows must be unique by `keys` (PostgreSQL refuses to update one row twice in a statement).
    """
    if not rows:
        return
    insert = _insert(session, model).values(list(rows))
    statement = insert.on_conflict_do_update(
        index_elements=keys, set_={column: insert.excluded[column] for column in update}
    )
    session.execute(statement)


def _insert(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
