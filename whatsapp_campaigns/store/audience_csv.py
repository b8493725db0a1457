"""Reading an audience CSV (SPEC §4 rule 10) into recipients: the file decoded as it is read,
its delimiter and header, and every row checked and normalized into a spool file of
recipients (`store.audiences` then writes them in one transaction). Memory stays flat whatever
the file's size: only the set of numbers seen, as integers, grows with the rows.
"""

import codecs
import csv
import io
import itertools
import json
import operator
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from whatsapp_campaigns.domain.models import InvalidRow
from whatsapp_campaigns.domain.phones import InvalidPhoneNumber, PhoneNormalizer

_SPOOL_CHUNK = 5_000  # spool lines written at once
# A JSON string literal exactly as `json.dumps` writes one (ASCII, escaped), in C.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii

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
class Collector:
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
    lines: list[str] = field(default_factory=list)  # spool lines not written yet

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
        self.lines.append(f"{phone}\t{row_number}\t{variables_json}\n")
        if len(self.lines) >= _SPOOL_CHUNK:
            self.write_lines()

    def write_lines(self) -> None:
        self.spool.writelines(self.lines)
        self.lines.clear()

    def reject(self, row_number: int, value: str, reason: str) -> None:
        self.invalid_reasons[reason] += 1
        if len(self.invalid_rows) < _KEPT_INVALID_ROWS:
            self.invalid_rows.append(
                InvalidRow(row_number=row_number, value=value[:_VALUE_CHARS], reason=reason)
            )

    def spooled(self, chunk: int) -> Iterator[list[tuple[str, int, str]]]:
        """(phone, CSV row number, variables as JSON) of every recipient, in file order, in
        lists of up to `chunk`."""
        self.write_lines()
        self.spool.seek(0)
        while lines := list(itertools.islice(self.spool, chunk)):
            yield [
                (phone, int(row_number), variables[:-1])  # without the line's "\n"
                for phone, row_number, variables in map(_split_line, lines)
            ]


_split_line = operator.methodcaller("split", "\t", 2)


def spool_file() -> IO[str]:
    return tempfile.SpooledTemporaryFile(
        max_size=_SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="\n"
    )


def open_source(source: str | os.PathLike[str] | BinaryIO, stack: ExitStack) -> BinaryIO:
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


def decoded_text(source: BinaryIO, progress: ImportProgress | None) -> IO[str]:
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


def collect_csv(source: BinaryIO, text: IO[str], phone_column: str, collector: Collector) -> None:
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
    collector: Collector,
) -> None:
    header: list[str] = []
    for _, record in records:
        if any(cell.strip() for cell in record):
            header = [cell.strip() for cell in record]
            break
    phone_index = _phone_index(header, phone_column, collector.normalize)
    variables = [(i, column) for i, column in enumerate(header) if column and i != phone_index]
    columns = [column for _, column in variables]
    collector.variable_names.update(dict.fromkeys(columns))
    pick = _picker([i for i, _ in variables])
    to_json = _json_template(columns)
    empty = [0] * len(variables)  # per variable, kept recipients without a value
    width = len(header)
    any_row = False
    seen_before = len(collector.seen)
    # The loop every row goes through: kept flat, C-level calls only where it can (no method
    # call per row, no call per cell, the JSON from a template), ~1M rows a few seconds.
    normalize, seen, lines = collector.normalize, collector.seen, collector.lines
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
        raw_phone = record[phone_index]
        try:
            phone = normalize(raw_phone)
        except InvalidPhoneNumber as error:
            collector.reject(row_number, raw_phone.strip(), error.reason)
            continue
        key = int(phone[1:])
        if key in seen:
            collector.duplicates += 1
            continue
        seen.add(key)
        values = tuple(map(str.strip, pick(record)))
        if "" in values:
            for position, value in enumerate(values):
                if not value:
                    empty[position] += 1
        lines.append(f"{phone}\t{row_number}\t{to_json % tuple(map(_json_string, values))}\n")
        if len(lines) >= _SPOOL_CHUNK:
            collector.write_lines()
    kept = len(seen) - seen_before
    collector.recipients += kept
    collector.filled.update({column: kept - n for column, n in zip(columns, empty, strict=True)})
    if not any_row:
        raise AudienceImportError("the file has a header row but no data rows")


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """The cells at `indexes` of a row, as a tuple (`itemgetter` returns a single cell bare)."""
    if len(indexes) > 1:
        return operator.itemgetter(*indexes)
    if indexes:
        index = indexes[0]
        return lambda record: (record[index],)
    return lambda record: ()


def _json_template(columns: list[str]) -> str:
    """A %-template of `json.dumps({column: value})` for a fixed list of columns, to fill with
    the values as JSON strings: the same text, at a fraction of the cost per row."""
    members = [_json_string(column).replace("%", "%%") + ": %s" for column in columns]
    return "{" + ", ".join(members) + "}"


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
