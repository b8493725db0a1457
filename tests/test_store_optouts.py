"""Opt-outs (SPEC §4 rule 10): a number that replied STOP is never sent to again."""

from tests.store_helpers import ACCOUNT, seed_account
from whatsapp_campaigns.store import optouts
from whatsapp_campaigns.store.db import Database

PHONE = "+12025550106"


def _opt_out(db: Database, phone: str = PHONE, account_id: str = ACCOUNT) -> bool:
    with db.session() as session:
        return optouts.opt_out(session, account_id, phone, "STOP")


def test_opt_out_is_true_the_first_time(db: Database) -> None:
    seed_account(db)
    assert _opt_out(db) is True
    assert optouts.is_opted_out(db, ACCOUNT, PHONE)


def test_opt_out_again_is_false_and_harmless(db: Database) -> None:
    seed_account(db)
    _opt_out(db)
    assert _opt_out(db) is False
    assert optouts.is_opted_out(db, ACCOUNT, PHONE)


def test_a_number_that_never_opted_out_is_not_opted_out(db: Database) -> None:
    seed_account(db)
    assert not optouts.is_opted_out(db, ACCOUNT, PHONE)


def test_opt_out_is_per_account(db: Database) -> None:
    seed_account(db, "a")
    seed_account(db, "b")
    _opt_out(db, account_id="a")
    assert not optouts.is_opted_out(db, "b", PHONE)


def test_opted_out_among_finds_the_opted_out_numbers(db: Database) -> None:
    seed_account(db)
    _opt_out(db, "+12025550110")
    _opt_out(db, "+12025550112")
    phones = ["+12025550110", "+12025550111", "+12025550112"]
    with db.session() as session:
        assert optouts.opted_out_among(session, ACCOUNT, phones) == {
            "+12025550110",
            "+12025550112",
        }


def test_opted_out_among_handles_more_numbers_than_one_query_takes(db: Database) -> None:
    seed_account(db)
    phones = [f"+1202555{i:04d}" for i in range(2500)]
    with db.session() as session:
        for phone in phones[::100]:
            optouts.opt_out(session, ACCOUNT, phone, None)
    with db.session() as session:
        assert optouts.opted_out_among(session, ACCOUNT, phones) == set(phones[::100])


def test_opted_out_among_no_numbers_is_empty(db: Database) -> None:
    seed_account(db)
    with db.session() as session:
        assert optouts.opted_out_among(session, ACCOUNT, []) == set()


def test_remove_opt_out_opts_the_number_back_in(db: Database) -> None:
    seed_account(db)
    _opt_out(db)
    assert optouts.remove_opt_out(db, ACCOUNT, PHONE) is True
    assert not optouts.is_opted_out(db, ACCOUNT, PHONE)


def test_remove_opt_out_of_a_number_not_opted_out_is_false(db: Database) -> None:
    seed_account(db)
    assert optouts.remove_opt_out(db, ACCOUNT, PHONE) is False
