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

import codecs
import csv
import io
import itertools
import json
import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from whatsapp_campaigns.domain.models import Audience, AudienceImportResult, InvalidRow, Recipient
from whatsapp_campaigns.domain.phones import InvalidPhoneNumber, PhoneNormalizer
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.models import Account, AudienceRow, OptOut, RecipientRow, utcnow

log = logging.getLogger(__name__)

# A JSON string literal exactly as `json.dumps` writes one (ASCII, escaped), in C.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii

_INSERT_CHUNK = 5_000
_KEPT_INVALID_ROWS = 1_000  # all are counted; these many are kept for the report
_VALUE_CHARS = 100  # of an invalid row's value kept in the report
_DELIMITERS = (",", ";", "\t", "|")  # spreadsheets in many locales export ";"
_READ_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 8 << 20  # recipients spooled in memory up to this size, then on disk

# Called with the bytes of the file read so far (for a progress bar).
ImportProgress = Callable[[int], None]


class AudienceImportError(ValueError):
    """The file or rows cannot be imported at all (nothing was written); the message says what
    to fix."""


@dataclass
class _Collector:
    """Row outcomes of one import: recipients go to a spool file (one "phone TAB row number TAB
    variables as JSON" line each, JSON escapes every tab and newline) until the single write
    transaction;
    counts and the first invalid rows stay in memory."""

    normalize: PhoneNormalizer
    spool: IO[str]
    recipients: int = 0
    seen: set[int] = field(default_factory=set)  # E.164 digits as integers: ~5x smaller
    variable_names: dict[str, None] = field(default_factory=dict)  # ordered set
    filled: Counter[str] = field(default_factory=Counter)  # non-empty values, per variable
    invalid_rows: list[InvalidRow] = field(default_factory=list)
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    _lines: list[str] = field(default_factory=list)  # spool lines not written yet

    @property
    def invalid(self) -> int:
        return sum(self.invalid_reasons.values())

    def accept(self, row_number: int, raw_phone: str) -> str | None:
        """The row's number in E.164 when it is a new recipient; None when it is invalid
        (recorded with its reason) or a duplicate (counted)."""
        try:
            phone = self.normalize(raw_phone)
        except InvalidPhoneNumber as error:
            self.reject(row_number, raw_phone.strip(), error.reason)
            return None
        key = int(phone[1:])
        if key in self.seen:
            self.duplicates += 1
            return None
        self.seen.add(key)
        self.recipients += 1
        return phone

    def keep(self, phone: str, row_number: int, variables_json: str) -> None:
        """Spool an accepted recipient (`accept`) with its variables already as JSON."""
        self._lines.append(f"{phone}\t{row_number}\t{variables_json}\n")
        if len(self._lines) >= _INSERT_CHUNK:
            self.spool.writelines(self._lines)
            self._lines.clear()

    def reject(self, row_number: int, value: str, reason: str) -> None:
        self.invalid_reasons[reason] += 1
        if len(self.invalid_rows) < _KEPT_INVALID_ROWS:
            self.invalid_rows.append(
                InvalidRow(row_number=row_number, value=value[:_VALUE_CHARS], reason=reason)
            )

    def spooled(self) -> Iterator[tuple[str, int, str]]:
        """(phone, CSV row number, variables as JSON) of every recipient, in file order."""
        self.spool.writelines(self._lines)
        self._lines.clear()
        self.spool.seek(0)
        for line in self.spool:
            phone, row_number, variables = line.rstrip("\n").split("\t", 2)
            yield phone, int(row_number), variables


def _spool() -> IO[str]:
    return tempfile.SpooledTemporaryFile(
        max_size=_SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="\n"
    )


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
        raw = _open(source, stack)
        collector = _Collector(normalize, stack.enter_context(_spool()))
        _collect_csv(raw, _text(raw, progress), phone_column.strip(), collector)
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
    with _spool() as spool:
        return _import_rows(
            db, account_id, name, rows, phone_column, _Collector(normalize, spool), started
        )


def _import_rows(
    db: Database,
    account_id: str,
    name: str,
    rows: Iterable[Mapping[str, str]],
    phone_column: str,
    collector: _Collector,
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


def _open(source: str | os.PathLike[str] | BinaryIO, stack: ExitStack) -> BinaryIO:
    if isinstance(source, str | os.PathLike):
        try:
            return stack.enter_context(open(source, "rb"))
        except OSError as error:
            raise AudienceImportError(
                f"cannot read {os.fspath(source)}: {error.strerror}"
            ) from None
    if isinstance(source, io.TextIOBase):
        raise TypeError("open the CSV file in binary mode ('rb'): the import checks its encoding")
    return source


class _CountingRaw(io.RawIOBase):
    """The source as a raw stream that tells `progress` how far it got."""

    def __init__(self, source: BinaryIO, progress: ImportProgress | None) -> None:
        self._source = source
        self._progress = progress
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        if isinstance(data, str):
            raise TypeError(
                "open the CSV file in binary mode ('rb'): the import checks its encoding"
            )
        size = len(data)
        buffer[:size] = data
        self.read_bytes += size
        if self._progress is not None and size:
            self._progress(self.read_bytes)
        return size


def _text(source: BinaryIO, progress: ImportProgress | None) -> IO[str]:
    """The file as text decoded while it is read (by `io`, in C); refuses at once what a
    spreadsheet user may upload by mistake, saying how to fix it (re-saving as "CSV UTF-8"
    fixes most). Bytes that are not UTF-8 raise UnicodeDecodeError as they are reached."""
    buffered = io.BufferedReader(_CountingRaw(source, progress), _READ_CHUNK)
    head = buffered.peek(_READ_CHUNK)  # the first read's bytes, not consumed
    if head.startswith(b"PK\x03\x04"):
        raise AudienceImportError(
            "this is an Excel workbook (or another zip file), not CSV: save it as 'CSV UTF-8'"
        )
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise AudienceImportError("the file is UTF-16: save it as 'CSV UTF-8'")
    if b"\x00" in head:  # later NULs: csv refuses the line
        raise AudienceImportError("the file is binary, not a CSV text file")
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="")


def _first_bad_line(source: BinaryIO) -> int | None:
    """The line of the first byte that is not UTF-8, found again from the start (the decoder
    reads ahead of the rows); None when the source cannot be read again."""
    try:
        source.seek(0)
    except (OSError, ValueError):
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    while chunk := source.read(_READ_CHUNK):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as error:
            return line + chunk.count(b"\n", 0, max(0, error.start))
        line += chunk.count(b"\n")
    return line


def _collect_csv(source: BinaryIO, text: IO[str], phone_column: str, collector: _Collector) -> None:
    head: list[str] = []
    try:
        for line in text:  # the delimiter is the header's: find the first non-blank line
            head.append(line)
            if line.strip():
                break
        if not head or not head[-1].strip():
            raise AudienceImportError("the file is empty")
        delimiter = max(_DELIMITERS, key=head[-1].count)
        reader = csv.reader(itertools.chain(head, text), delimiter=delimiter)
        _collect_records(enumerate(reader, start=1), delimiter, phone_column, collector)
    except UnicodeDecodeError:
        bad_line = _first_bad_line(source)
        where = f" (first bad byte on line {bad_line})" if bad_line is not None else ""
        raise AudienceImportError(
            f"the file is not UTF-8{where}: save it as 'CSV UTF-8' and import it again"
        ) from None
    except csv.Error as error:
        if "NUL" in str(error):
            raise AudienceImportError("the file is binary, not a CSV text file") from None
        raise AudienceImportError(f"not a valid CSV file: {error}") from None


def _collect_records(
    records: Iterator[tuple[int, list[str]]],
    delimiter: str,
    phone_column: str,
    collector: _Collector,
) -> None:
    header: list[str] = []
    for _, record in records:
        if any(cell.strip() for cell in record):
            header = [cell.strip() for cell in record]
            break
    phone_index = _phone_index(header, phone_column, collector.normalize)
    variables = [(i, column) for i, column in enumerate(header) if column and i != phone_index]
    collector.variable_names.update(dict.fromkeys(column for _, column in variables))
    indexes = [i for i, _ in variables]
    to_json = _VariablesJSON([column for _, column in variables])
    filled = [0] * len(variables)
    width = len(header)
    any_row = False
    # The loop every row goes through: kept flat (no call per cell, JSON built from parts).
    accept, keep = collector.accept, collector.keep
    for row_number, record in records:
        if not "".join(record).strip():
            continue  # blank rows, and the empty rows spreadsheets leave at the end
        any_row = True
        if len(record) != width:
            if len(record) > width and not "".join(record[width:]).strip():
                record = record[:width]  # trailing empty cells
            else:
                value = record[phone_index] if phone_index < len(record) else delimiter.join(record)
                collector.reject(
                    row_number, value.strip(), f"expected {width} cells, found {len(record)}"
                )
                continue
        phone = accept(row_number, record[phone_index])
        if phone is None:
            continue
        values = [record[i].strip() for i in indexes]
        for position, value in enumerate(values):
            if value:
                filled[position] += 1
        keep(phone, row_number, to_json(values))
    collector.filled.update({column: n for (_, column), n in zip(variables, filled, strict=True)})
    if not any_row:
        raise AudienceImportError("the file has a header row but no data rows")


class _VariablesJSON:
    """`json.dumps` of {column: value} for a fixed list of columns, from precomputed parts:
    the same text, at a fraction of the cost per row."""

    def __init__(self, columns: list[str]) -> None:
        self._parts = [
            ("{" if n == 0 else ", ") + _json_string(column) + ": "
            for n, column in enumerate(columns)
        ]

    def __call__(self, values: list[str]) -> str:
        if not values:
            return "{}"
        return (
            "".join([p + _json_string(v) for p, v in zip(self._parts, values, strict=True)]) + "}"
        )


def _phone_index(header: list[str], phone_column: str, normalize: PhoneNormalizer) -> int:
    target = phone_column.casefold()
    matches = [i for i, column in enumerate(header) if column.casefold() == target]
    if len(matches) > 1:
        raise AudienceImportError(f"{len(matches)} columns are named {phone_column!r}: keep one")
    if not matches:
        found = ", ".join(repr(column) for column in header if column) or "none"
        message = f"no {phone_column!r} column; the columns are: {found}"
        if header and _looks_like_phone(header[0], normalize):
            message += f" (the first row looks like data: add a header row naming {phone_column!r})"
        raise AudienceImportError(message)
    named = [column for column in header if column]
    repeated = sorted({column for column in named if named.count(column) > 1})
    if repeated:
        raise AudienceImportError(f"column {repeated[0]!r} appears more than once")
    return matches[0]


def _looks_like_phone(cell: str, normalize: PhoneNormalizer) -> bool:
    try:
        normalize(cell)
    except InvalidPhoneNumber:
        return False
    return True


def _store(
    db: Database, account_id: str, name: str, collector: _Collector, started: float
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
        _insert_recipients(session, audience_id, collector.spooled())
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
    session: Session, audience_id: str, recipients: Iterator[tuple[str, int, str]]
) -> None:
    """Bulk insert of (phone, row number, variables already as JSON) in the import's
    transaction: COPY on
    PostgreSQL with psycopg (executemany is ~3x slower there), else the driver's executemany
    in chunks."""
    connection = session.connection()
    if connection.dialect.driver == "psycopg":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(
            "COPY recipients (audience_id, phone_e164, variables, suppressed, row_number) "
            "FROM STDIN"
        ) as copy:
            for phone, row_number, variables in recipients:
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
    while chunk := [
        (audience_id, phone, variables, row_number)
        for phone, row_number, variables in itertools.islice(recipients, _INSERT_CHUNK)
    ]:
        connection.exec_driver_sql(statement, chunk)


def _missing_variables(
    collector: _Collector, names: list[str], sendable: int, suppressed: list[dict[str, Any]]
) -> dict[str, int]:
    """{variable: sendable recipients without a value}: what the preflight needs to refuse a
    campaign whose template would go out with a hole in it, without reading the recipients."""
    filled = Counter(collector.filled)
    for variables in suppressed:  # not sendable: their values do not count
        filled.subtract(name for name, value in variables.items() if value)
    return {name: sendable - filled[name] for name in names}


def _log_import(audience: Audience, collector: _Collector, elapsed: float) -> None:
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
