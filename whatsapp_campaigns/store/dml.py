"""Data-changing statements run the same way on SQLite and PostgreSQL.

Conditional `UPDATE ... WHERE <guard>` and `INSERT ... ON CONFLICT` are how the store stays
correct under concurrency without read-then-write races: the row count says who won.
"""

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import BigInteger, CursorResult, Executable, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean

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


class IdIn(ColumnElement[bool]):
    """`column` is one of the ids bound as `name` (a list): `= ANY(:name)` on PostgreSQL, one
    statement whatever the number of ids, so psycopg prepares it and PostgreSQL plans it once
    (an `IN (...)` of each length is a statement of its own, planned on every run: for a send
    group of a few messages that cost more than running it; bench/RESULTS.md, "Set-based send
    groups"); `IN (...)` elsewhere (SQLite plans in-process, cheaply)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True
    # What the statement cache keys it by: without, each run compiled the statement anew.
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[int] | QueryableAttribute[int], name: str) -> None:
        self.column = column
        self.name = name


@compiles(IdIn)
def _id_in(element: IdIn, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


@compiles(IdIn, "postgresql")
def _id_in_postgresql(element: IdIn, compiler: SQLCompiler, **kw: Any) -> str:
    array = bindparam(element.name, type_=postgresql.ARRAY(BigInteger))
    return compiler.process(element.column == any_(array), **kw)
