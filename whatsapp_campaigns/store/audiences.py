"""Audiences (SPEC §4 rule 10): CSV or rows in, E.164 recipients out, with a report of what was
left out and why.

An import streams: the file is read, checked and normalized row by row into a spool file of
recipients (memory stays flat whatever the file's size: only the set of numbers seen, as
integers, grows with the rows), then the audience and its recipients are written in one short
transaction from the spool (SQLite holds its write lock only for the inserts): a file that
cannot be imported at all raises AudienceImportError and writes nothing.

Rows that can be left out are: invalid ones (counted, the first 1,000 kept with row number
and reason), duplicates (first row wins) and opted-out numbers, which are kept as
`suppressed` recipients so the campaign report shows them, but never sent.

Counts add up to the non-blank data rows: valid + invalid + duplicates + suppressed, where
`valid` are the recipients that can be sent to.
"""

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, BinaryIO

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.models import Audience, AudienceImportResult, InvalidRow, Recipient
from whatsapp_campaigns.domain.phones import PhoneNormalizer
from whatsapp_campaigns.store.audience_csv import (
    AudienceImportError as AudienceImportError,  # raised by the imports: callers catch it here
)
from whatsapp_campaigns.store.audience_csv import (
    Collector,
    ImportProgress,
    collect_csv,
    decoded_text,
    open_source,
    spool_file,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.models import Account, AudienceRow, OptOut, RecipientRow, utcnow

log = logging.getLogger(__name__)

_INSERT_CHUNK = 5_000
_SQLITE_IMPORT_CACHE_KIB = 32 << 10  # SQLite's page cache while recipients are inserted


def import_audience_csv(
    db: Database,
    account_id: str,
    name: str,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    phone_column: str = "phone",
    default_region: str = "US",
    progress: ImportProgress | None = None,
) -> AudienceImportResult:
    """Import a CSV file (a path or a binary file object) as a new audience of the account.

    The file must be UTF-8 (a BOM is fine, as Excel's "CSV UTF-8" writes it) with a header row;
    the delimiter is the header's most frequent of , ; tab |. The `phone_column` header is
    matched ignoring case and surrounding spaces; every other named column is a template
    variable. Row numbers in the report are spreadsheet rows: the header is row 1. The file is
    read as a stream; `progress` is called with the bytes read so far.
    """
    started = time.perf_counter()
    normalize = _normalizer(default_region)
    with ExitStack() as stack:
        raw = open_source(source, stack)
        collector = Collector(normalize, stack.enter_context(spool_file()))
        collect_csv(raw, decoded_text(raw, progress), phone_column.strip(), collector)
        return _store(db, account_id, name, collector, started)


def import_audience_rows(
    db: Database,
    account_id: str,
    name: str,
    rows: Iterable[Mapping[str, str]],
    *,
    phone_column: str = "phone",
    default_region: str = "US",
) -> AudienceImportResult:
    """Import rows (for example from `csv.DictReader` or a JSON body) as a new audience.

    Row numbers count as if the rows came from a file with a header: the first row is row 2.
    Variables are the keys other than the phone key, in order of first appearance; a row
    without some key counts as an empty value for it.
    """
    started = time.perf_counter()
    normalize = _normalizer(default_region)
    with spool_file() as spool:
        return _import_rows(
            db, account_id, name, rows, phone_column, Collector(normalize, spool), started
        )


def _import_rows(
    db: Database,
    account_id: str,
    name: str,
    rows: Iterable[Mapping[str, str]],
    phone_column: str,
    collector: Collector,
    started: float,
) -> AudienceImportResult:
    target = phone_column.strip().casefold()
    any_row = False
    for row_number, row in enumerate(rows, start=2):
        phone: str | None = None
        variables: dict[str, str] = {}
        for key, value in row.items():
            column = str(key).strip()
            cell = "" if value is None else str(value).strip()
            if column.casefold() == target:
                phone = cell
            elif column:
                variables[column] = cell
        if not any_row and phone is None:
            found = ", ".join(repr(str(k).strip()) for k in row) or "none"
            raise AudienceImportError(f"no {phone_column!r} column; the columns are: {found}")
        if not phone and not any(variables.values()):
            continue  # a blank row
        any_row = True
        collector.variable_names.update(dict.fromkeys(variables))
        accepted = collector.accept(row_number, phone or "")
        if accepted is not None:
            collector.filled.update(name for name, value in variables.items() if value)
            collector.keep(accepted, row_number, json.dumps(variables))
    if not any_row:
        raise AudienceImportError("no rows to import")
    return _store(db, account_id, name, collector, started)


def get_audience(db: Database, audience_id: str) -> Audience:
    with db.session() as session:
        row = session.get(AudienceRow, audience_id)
        if row is None:
            raise NotFound(f"audience {audience_id} not found")
        return Audience.model_validate(row)


def list_audiences(db: Database, account_id: str) -> list[Audience]:
    """The account's audiences, newest first."""
    with db.session() as session:
        rows = session.scalars(
            select(AudienceRow)
            .where(AudienceRow.account_id == account_id)
            .order_by(AudienceRow.created_at.desc(), AudienceRow.id)
        )
        return [Audience.model_validate(row) for row in rows]


def get_invalid_rows(db: Database, audience_id: str) -> list[InvalidRow]:
    """The first 1,000 invalid rows of the import (the audience's `invalid` counts them all)."""
    with db.session() as session:
        stored = session.scalar(
            select(AudienceRow.invalid_rows).where(AudienceRow.id == audience_id)
        )
        if stored is None:
            raise NotFound(f"audience {audience_id} not found")
        return [InvalidRow.model_validate(item) for item in stored]


def sample_recipients(
    db: Database, audience_id: str, limit: int = 5, *, row_number: int | None = None
) -> list[Recipient]:
    """The first recipients in file order, to preview a template with real variables; from
    CSV row `row_number` on (the header is row 1) when given."""
    statement = (
        select(
            RecipientRow.phone_e164,
            RecipientRow.variables,
            RecipientRow.suppressed,
            RecipientRow.row_number,
        )
        .where(RecipientRow.audience_id == audience_id)
        .order_by(RecipientRow.id)
        .limit(limit)
    )
    if row_number is not None:
        statement = statement.where(RecipientRow.row_number >= row_number)
    with db.session() as session:
        if session.get(AudienceRow, audience_id) is None:
            raise NotFound(f"audience {audience_id} not found")
        return [
            Recipient(phone_e164=phone, variables=variables, suppressed=suppressed, row_number=row)
            for phone, variables, suppressed, row in session.execute(statement)
        ]


def _normalizer(default_region: str) -> PhoneNormalizer:
    try:
        return PhoneNormalizer(default_region)
    except ValueError as error:
        raise AudienceImportError(str(error)) from None


def _store(
    db: Database, account_id: str, name: str, collector: Collector, started: float
) -> AudienceImportResult:
    """Write the audience and its recipients in one transaction, set-based."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AudienceImportError("an audience needs a name of 1 to 200 characters")
    audience_id = uuid.uuid4().hex[:12]
    created_at = utcnow()
    variable_names = list(collector.variable_names)
    with db.session() as session:
        if session.get(Account, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        session.execute(
            insert(AudienceRow).values(
                id=audience_id,
                account_id=account_id,
                name=name,
                variable_names=variable_names,
                missing_variables={},
                invalid_rows=[],
                created_at=created_at,
            )
        )
        _insert_recipients(session, audience_id, collector.spooled(_INSERT_CHUNK))
        suppressed = list(
            session.execute(
                update(RecipientRow)
                .where(
                    RecipientRow.audience_id == audience_id,
                    RecipientRow.phone_e164.in_(
                        select(OptOut.phone_e164).where(OptOut.account_id == account_id)
                    ),
                )
                .values(suppressed=True)
                .returning(RecipientRow.variables)
                .execution_options(synchronize_session=False)
            ).scalars()
        )
        valid = collector.recipients - len(suppressed)
        missing = _missing_variables(collector, variable_names, valid, suppressed)
        invalid_rows = [row.model_dump() for row in collector.invalid_rows]
        session.execute(
            update(AudienceRow)
            .where(AudienceRow.id == audience_id)
            .values(
                valid=valid,
                invalid=collector.invalid,
                duplicates=collector.duplicates,
                suppressed=len(suppressed),
                missing_variables=missing,
                invalid_rows=invalid_rows,
            )
            .execution_options(synchronize_session=False)
        )
    audience = Audience(
        id=audience_id,
        account_id=account_id,
        name=name,
        created_at=created_at,
        valid=valid,
        invalid=collector.invalid,
        duplicates=collector.duplicates,
        suppressed=len(suppressed),
        variable_names=variable_names,
    )
    _log_import(audience, collector, time.perf_counter() - started)
    return AudienceImportResult(audience=audience, invalid_rows=collector.invalid_rows)


def _insert_recipients(
    session: Session, audience_id: str, recipients: Iterator[list[tuple[str, int, str]]]
) -> None:
    """Bulk insert of chunks of (phone, row number, variables already as JSON) in the
    import's transaction: COPY on PostgreSQL with psycopg (executemany is ~3x slower there),
    else the driver's executemany per chunk."""
    connection = session.connection()
    if connection.dialect.driver == "psycopg":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(
            "COPY recipients (audience_id, phone_e164, variables, suppressed, row_number) "
            "FROM STDIN"
        ) as copy:
            for chunk in recipients:
                for phone, row_number, variables in chunk:
                    copy.write_row((audience_id, phone, variables, False, row_number))
        return
    # The driver's own executemany: SQLAlchemy's per-row parameter processing doubles the time.
    statement = (
        "INSERT INTO recipients (audience_id, phone_e164, variables, suppressed, row_number) "
        "VALUES "
    )
    statement += (
        "(?, ?, ?, 0, ?)" if connection.dialect.paramstyle == "qmark" else "(%s, %s, %s, false, %s)"
    )
    with _import_page_cache(connection):
        for chunk in recipients:
            connection.exec_driver_sql(
                statement,
                [(audience_id, phone, variables, row) for phone, row, variables in chunk],
            )


@contextmanager
def _import_page_cache(connection: Connection) -> Iterator[None]:
    """On SQLite, a page cache of `_SQLITE_IMPORT_CACHE_KIB` for the inserts (then the
    connection's own again): the unique (audience, number) index is written in the numbers'
    random order, and with the default 2 MiB cache a million rows spend half their time
    re-reading its pages."""
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{_SQLITE_IMPORT_CACHE_KIB}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={int(previous or -2000)}")


def _missing_variables(
    collector: Collector, names: list[str], sendable: int, suppressed: list[dict[str, Any]]
) -> dict[str, int]:
    """{variable: sendable recipients without a value}: what the preflight needs to refuse a
    campaign whose template would go out with a hole in it, without reading the recipients."""
    filled = Counter(collector.filled)
    for variables in suppressed:  # not sendable: their values do not count
        filled.subtract(name for name, value in variables.items() if value)
    return {name: sendable - filled[name] for name in names}


def _log_import(audience: Audience, collector: Collector, elapsed: float) -> None:
    # Counts and reasons only: phone numbers and variables are personal data.
    log.info(
        "audience %s imported for account %s: %d valid, %d invalid, %d duplicates, "
        "%d suppressed in %.2fs",
        audience.id,
        audience.account_id,
        audience.valid,
        audience.invalid,
        audience.duplicates,
        audience.suppressed,
        elapsed,
    )
    if collector.invalid_rows:
        reasons = ", ".join(
            f"{n} {reason}" for reason, n in collector.invalid_reasons.most_common()
        )
        log.warning(
            "audience %s: %d invalid rows (%s), first at row %d",
            audience.id,
            audience.invalid,
            reasons,
            collector.invalid_rows[0].row_number,
        )
