"""Audience import (SPEC §4 rule 10) as a user checks it: what is kept, what is reported, and
files that cannot be imported at all (nothing written)."""

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from whatsapp_campaigns.domain.models import AudienceImportResult, InvalidRow
from whatsapp_campaigns.store.audiences import (
    AudienceImportError,
    get_audience,
    get_invalid_rows,
    import_audience_csv,
    import_audience_rows,
    list_audiences,
    sample_recipients,
)
from whatsapp_campaigns.store.db import Database
from whatsapp_campaigns.store.errors import NotFound
from whatsapp_campaigns.store.models import Account, AudienceRow, OptOut, RecipientRow

ACCOUNT = "default"


@pytest.fixture
def store(db: Database) -> Iterator[Database]:
    with db.session() as session:
        session.add(Account(id=ACCOUNT, name="Default"))
    yield db


def csv_import(db: Database, content: str | bytes, **kwargs: str) -> AudienceImportResult:
    data = content.encode() if isinstance(content, str) else content
    return import_audience_csv(db, ACCOUNT, "spring list", io.BytesIO(data), **kwargs)


def recipients(db: Database, audience_id: str) -> dict[str, RecipientRow]:
    with db.session() as session:
        rows = session.scalars(select(RecipientRow).where(RecipientRow.audience_id == audience_id))
        return {row.phone_e164: row for row in rows}


def table_counts(db: Database) -> tuple[int, int]:
    with db.session() as session:
        audiences = session.scalar(select(func.count()).select_from(AudienceRow))
        stored = session.scalar(select(func.count()).select_from(RecipientRow))
    return int(audiences or 0), int(stored or 0)


def stored_audience(db: Database, audience_id: str) -> AudienceRow:
    with db.session() as session:
        row = session.get(AudienceRow, audience_id)
        assert row is not None
        return row


def test_valid_rows_become_e164_recipients(store: Database) -> None:
    result = csv_import(store, "phone,name\n+1 202-555-0110,Ann\n(202) 555-0111,Bob\n")
    assert result.audience.valid == 2
    assert set(recipients(store, result.id)) == {"+12025550110", "+12025550111"}


def test_national_numbers_use_the_default_region(store: Database) -> None:
    result = csv_import(store, "phone\n020 7946 0958\n", default_region="GB")
    assert set(recipients(store, result.id)) == {"+442079460958"}


def test_invalid_rows_are_reported_with_spreadsheet_row_and_reason(store: Database) -> None:
    result = csv_import(store, "phone,name\n+12025550110,Ann\nhello,Bob\n+1 202 555 01,Cy\n")
    assert result.audience.invalid == 2
    assert result.invalid_rows == [
        InvalidRow(row_number=3, value="hello", reason="not a number"),
        InvalidRow(row_number=4, value="+1 202 555 01", reason="too short"),
    ]


def test_invalid_rows_are_stored_for_the_report(store: Database) -> None:
    result = csv_import(store, "phone\n+12025550110\n12\n")
    assert get_invalid_rows(store, result.id) == [
        InvalidRow(row_number=3, value="12", reason="too short")
    ]


def test_blank_phone_is_an_invalid_row(store: Database) -> None:
    result = csv_import(store, "phone,name\n+12025550110,Ann\n,Bob\n")
    assert result.invalid_rows == [InvalidRow(row_number=3, value="", reason="empty")]


def test_blank_lines_are_skipped_but_keep_row_numbers(store: Database) -> None:
    result = csv_import(store, "phone\n+12025550110\n\n,\nbad\n")
    assert result.audience.invalid == 1
    assert result.invalid_rows[0].row_number == 5


def test_ragged_row_is_invalid_with_cell_counts(store: Database) -> None:
    result = csv_import(store, "phone,name,order_id\n+12025550110,Ann,A1\n+12025550111,Bob\n")
    assert result.audience.valid == 1
    assert result.invalid_rows == [
        InvalidRow(row_number=3, value="+12025550111", reason="expected 3 cells, found 2")
    ]


def test_trailing_empty_cells_are_not_ragged(store: Database) -> None:
    result = csv_import(store, "phone,name\n+12025550110,Ann,,\n")
    assert result.audience.valid == 1
    assert result.audience.invalid == 0


def test_duplicates_are_dropped_first_row_wins(store: Database) -> None:
    result = csv_import(
        store, "phone,name\n+12025550110,First\n(202) 555-0110,Second\n202.555.0110,Third\n"
    )
    assert (result.audience.valid, result.audience.duplicates) == (1, 2)
    assert recipients(store, result.id)["+12025550110"].variables == {"name": "First"}


def test_opted_out_numbers_are_kept_suppressed(store: Database) -> None:
    with store.session() as session:
        session.add(OptOut(account_id=ACCOUNT, phone_e164="+12025550106", keyword="STOP"))
    result = csv_import(store, "phone\n+12025550110\n+1 202 555 0106\n")
    assert (result.audience.valid, result.audience.suppressed) == (1, 1)
    stored = recipients(store, result.id)
    assert stored["+12025550106"].suppressed is True
    assert stored["+12025550110"].suppressed is False


def test_opt_outs_of_another_account_do_not_suppress(store: Database) -> None:
    with store.session() as session:
        session.add(Account(id="other", name="Other"))
        session.flush()
        session.add(OptOut(account_id="other", phone_e164="+12025550106"))
    result = csv_import(store, "phone\n+12025550106\n")
    assert (result.audience.valid, result.audience.suppressed) == (1, 0)


def test_counts_add_up_to_the_data_rows(store: Database) -> None:
    with store.session() as session:
        session.add(OptOut(account_id=ACCOUNT, phone_e164="+12025550106"))
    result = csv_import(store, "phone\n+12025550110\n+12025550110\nbad\n+12025550106\n")
    a = result.audience
    assert (a.valid, a.invalid, a.duplicates, a.suppressed) == (1, 1, 1, 1)


def test_phone_header_matches_ignoring_case_and_spaces(store: Database) -> None:
    result = csv_import(store, " Phone ,name\n+12025550110,Ann\n")
    assert result.audience.valid == 1
    assert result.audience.variable_names == ["name"]


def test_custom_phone_column(store: Database) -> None:
    result = csv_import(store, "name,Mobile\nAnn,+12025550110\n", phone_column="mobile")
    assert set(recipients(store, result.id)) == {"+12025550110"}


def test_other_columns_become_trimmed_variables(store: Database) -> None:
    result = csv_import(store, "phone, name ,order_id\n+12025550110,  Ann ,A1\n")
    assert result.audience.variable_names == ["name", "order_id"]
    assert recipients(store, result.id)["+12025550110"].variables == {
        "name": "Ann",
        "order_id": "A1",
    }


def test_variable_names_are_stored_in_column_order(store: Database) -> None:
    result = csv_import(store, "order_id,phone,name\nA1,+12025550110,Ann\n")
    assert get_audience(store, result.id).variable_names == ["order_id", "name"]


def test_missing_variables_count_valid_recipients_with_empty_values(store: Database) -> None:
    result = csv_import(
        store, "phone,name,order_id\n+12025550110,Ann,\n+12025550111,,\n+12025550112,Cy,C3\n"
    )
    assert stored_audience(store, result.id).missing_variables == {"name": 1, "order_id": 2}


def test_missing_variables_ignore_suppressed_and_invalid_rows(store: Database) -> None:
    with store.session() as session:
        session.add(OptOut(account_id=ACCOUNT, phone_e164="+12025550106"))
    result = csv_import(store, "phone,name\n+12025550110,Ann\n+12025550106,\nbad,\n")
    assert stored_audience(store, result.id).missing_variables == {"name": 0}


def test_utf8_bom_is_accepted(store: Database) -> None:
    result = csv_import(store, "\ufeffphone,name\n+12025550110,Zoë\n".encode())
    assert result.audience.valid == 1
    assert recipients(store, result.id)["+12025550110"].variables == {"name": "Zoë"}


def test_semicolon_separated_file_is_read(store: Database) -> None:
    result = csv_import(store, "phone;name\n+12025550110;Ann\n")
    assert recipients(store, result.id)["+12025550110"].variables == {"name": "Ann"}


def test_quoted_cells_with_commas_and_newlines(store: Database) -> None:
    result = csv_import(store, 'phone,address\n+12025550110,"1 Main St,\nSpringfield"\nbad,x\n')
    assert recipients(store, result.id)["+12025550110"].variables == {
        "address": "1 Main St,\nSpringfield"
    }
    assert result.invalid_rows[0].row_number == 3


def test_quotes_backslashes_tabs_and_non_ascii_in_variables_are_stored_intact(
    store: Database,
) -> None:
    content = 'phone,"say ""hi""",path\n+12025550110,"Zoë said ""¡hola!""\t😀","C:\\x\\y"\n'
    result = csv_import(store, content)
    assert recipients(store, result.id)["+12025550110"].variables == {
        'say "hi"': 'Zoë said "¡hola!"\t😀',
        "path": "C:\\x\\y",
    }


def test_crlf_line_endings(store: Database) -> None:
    result = csv_import(store, "phone,name\r\n+12025550110,Ann\r\n")
    assert recipients(store, result.id)["+12025550110"].variables == {"name": "Ann"}


def test_import_from_a_path(store: Database, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("phone\n+12025550110\n")
    result = import_audience_csv(store, ACCOUNT, "from file", path)
    assert result.audience.valid == 1


def test_latin1_file_is_refused_and_nothing_written(store: Database) -> None:
    with pytest.raises(AudienceImportError, match=r"not UTF-8.*line 2"):
        csv_import(store, "phone,name\n+12025550110,Zoë\n".encode("latin-1"))
    assert table_counts(store) == (0, 0)


def _many_rows(count: int) -> bytes:
    lines = [f"+1202555{1000 + n % 9000:04d},Customer {n}" for n in range(count)]
    return ("phone,name\n" + "\n".join(lines) + "\n").encode()


def test_a_bad_byte_past_the_first_megabyte_names_its_line_and_writes_nothing(
    store: Database,
) -> None:
    data = _many_rows(60_000) + "+12025550110,Zoë\n".encode("latin-1")
    assert len(data) > 1 << 20  # past the first read chunk
    with pytest.raises(AudienceImportError, match=r"not UTF-8.*line 60002"):
        csv_import(store, data)
    assert table_counts(store) == (0, 0)


def test_a_large_file_is_read_in_chunks_with_progress(store: Database) -> None:
    data = _many_rows(9_000)  # 9,000 distinct numbers
    data = data + data[len("phone,name\n") :] * 20  # and 20 copies: duplicates
    seen: list[int] = []
    result = import_audience_csv(store, ACCOUNT, "big", io.BytesIO(data), progress=seen.append)
    assert (result.audience.valid, result.audience.duplicates) == (9_000, 20 * 9_000)
    assert len(seen) > 1 and seen == sorted(seen) and seen[-1] == len(data)


def test_missing_phone_column_names_the_columns_found(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="'name', 'mobile'"):
        csv_import(store, "name,mobile\nAnn,+12025550110\n")
    assert table_counts(store) == (0, 0)


def test_file_without_header_says_the_first_row_looks_like_data(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="looks like data"):
        csv_import(store, "+12025550110,Ann\n+12025550111,Bob\n")


def test_empty_file_is_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="empty"):
        csv_import(store, b"")
    assert table_counts(store) == (0, 0)


def test_header_only_file_is_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="no data rows"):
        csv_import(store, "phone,name\n\n")
    assert table_counts(store) == (0, 0)


def test_excel_workbook_is_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="not CSV"):
        csv_import(store, b"PK\x03\x04\x14\x00\x06\x00rest of a zip")


def test_binary_file_is_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="binary"):
        csv_import(store, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_two_phone_columns_are_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="2 columns are named 'phone'"):
        csv_import(store, "phone,Phone\n+12025550110,+12025550111\n")


def test_unknown_region_is_refused_before_reading(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="unknown region"):
        csv_import(store, "phone\n+12025550110\n", default_region="ZZ")


def test_all_rows_invalid_still_imports_an_empty_audience(store: Database) -> None:
    result = csv_import(store, "phone\nbad\nworse\n")
    assert (result.audience.valid, result.audience.invalid) == (0, 2)


def test_only_the_first_thousand_invalid_rows_are_kept_but_all_counted(store: Database) -> None:
    content = "phone\n" + "bad\n" * 1200
    result = csv_import(store, content)
    assert result.audience.invalid == 1200
    assert len(get_invalid_rows(store, result.id)) == 1000
    assert get_invalid_rows(store, result.id)[-1].row_number == 1001


def test_unknown_account_is_not_found(store: Database) -> None:
    with pytest.raises(NotFound):
        import_audience_rows(store, "nobody", "x", [{"phone": "+12025550110"}])


def test_rows_import_from_mappings(store: Database) -> None:
    result = import_audience_rows(
        store,
        ACCOUNT,
        "from api",
        [{"Phone": "+12025550110", "name": "Ann"}, {"Phone": "nope", "name": "Bob"}],
    )
    assert result.audience.valid == 1
    assert result.audience.variable_names == ["name"]
    assert result.invalid_rows == [InvalidRow(row_number=3, value="nope", reason="not a number")]


def test_rows_missing_a_key_count_as_missing_variable(store: Database) -> None:
    result = import_audience_rows(
        store,
        ACCOUNT,
        "from api",
        [{"phone": "+12025550110", "name": "Ann"}, {"phone": "+12025550111"}],
    )
    assert stored_audience(store, result.id).missing_variables == {"name": 1}


def test_rows_without_phone_key_are_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="'name'"):
        import_audience_rows(store, ACCOUNT, "x", [{"name": "Ann"}])
    assert table_counts(store) == (0, 0)


def test_no_rows_are_refused(store: Database) -> None:
    with pytest.raises(AudienceImportError, match="no rows"):
        import_audience_rows(store, ACCOUNT, "x", [])


def test_audience_id_is_twelve_hex_characters(store: Database) -> None:
    result = csv_import(store, "phone\n+12025550110\n")
    assert len(result.id) == 12
    int(result.id, 16)


def test_get_audience_of_unknown_id_is_not_found(store: Database) -> None:
    with pytest.raises(NotFound, match="audience nope not found"):
        get_audience(store, "nope")


def test_list_audiences_of_the_account(store: Database) -> None:
    first = csv_import(store, "phone\n+12025550110\n")
    second = csv_import(store, "phone\n+12025550111\n")
    assert {a.id for a in list_audiences(store, ACCOUNT)} == {first.id, second.id}
    assert list_audiences(store, "other") == []


def test_sample_recipients_in_file_order(store: Database) -> None:
    result = csv_import(store, "phone,name\n+12025550112,C\n+12025550110,A\n+12025550111,B\n")
    sample = sample_recipients(store, result.id, limit=2)
    assert [(r.phone_e164, r.variables["name"]) for r in sample] == [
        ("+12025550112", "C"),
        ("+12025550110", "A"),
    ]


def test_import_logs_counts_and_warns_about_invalid_rows(
    store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="whatsapp_campaigns.store.audiences")
    result = csv_import(store, "phone\n+12025550110\nsecret-value\n")
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(info) == 1 and result.id in info[0].getMessage()
    assert "1 valid, 1 invalid" in info[0].getMessage()
    assert len(warnings) == 1 and "1 not a number" in warnings[0].getMessage()
    assert all("secret-value" not in r.getMessage() for r in caplog.records)  # no personal data
