"""The Cloud API error-code table and `classify` (SPEC §4 rule 6)."""

import logging

import pytest

from whatsapp_campaigns.domain.errors import ErrorClass
from whatsapp_campaigns.whatsapp.error_codes import ERROR_CLASSES, classify
from whatsapp_campaigns.whatsapp.provider import ProviderError
from whatsapp_campaigns.whatsapp.wire import message_id_from_response, provider_error

E = ErrorClass
EXPECTED = {
    0: E.AUTH,
    1: E.FAILED,
    2: E.TRANSIENT,
    4: E.THROUGHPUT_LIMITED,
    80007: E.THROUGHPUT_LIMITED,
    100: E.FAILED,
    130429: E.THROUGHPUT_LIMITED,
    131000: E.FAILED,
    131005: E.ACCOUNT,
    131008: E.TEMPLATE,
    131009: E.TEMPLATE,
    131016: E.TRANSIENT,
    131021: E.INVALID_CONTACT,
    131026: E.INVALID_CONTACT,
    131031: E.ACCOUNT,
    131042: E.ACCOUNT,
    131047: E.POLICY,
    131048: E.MESSAGING_LIMITED,
    131049: E.BLOCKED,
    131050: E.BLOCKED,
    131051: E.FAILED,
    131052: E.FAILED,
    131053: E.FAILED,
    131056: E.PAIR_LIMITED,
    132000: E.TEMPLATE,
    132001: E.TEMPLATE,
    132005: E.TEMPLATE,
    132007: E.TEMPLATE,
    132012: E.TEMPLATE,
    132015: E.TEMPLATE,
    132016: E.TEMPLATE,
    133010: E.ACCOUNT,
    135000: E.FAILED,
    190: E.AUTH,
    368: E.ACCOUNT,
}


@pytest.mark.parametrize(("code", "expected"), sorted(EXPECTED.items()))
def test_each_listed_code_has_its_class(code: int, expected: ErrorClass) -> None:
    assert classify(code, 400) is expected


def test_the_table_holds_every_listed_code() -> None:
    assert set(EXPECTED) <= set(ERROR_CLASSES)


def test_a_known_code_wins_over_the_http_status() -> None:
    assert classify(130429, 400) is E.THROUGHPUT_LIMITED
    assert classify(131000, 500) is E.FAILED
    assert classify(131026, 503) is E.INVALID_CONTACT


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_without_a_code_is_transient(status: int) -> None:
    assert classify(None, status) is E.TRANSIENT


def test_no_answer_at_all_is_transient() -> None:
    assert classify(None, None) is E.TRANSIENT


def test_429_without_a_code_is_throughput_limited() -> None:
    assert classify(None, 429) is E.THROUGHPUT_LIMITED


def test_401_without_a_code_is_auth() -> None:
    assert classify(None, 401) is E.AUTH


def test_the_api_permission_range_is_auth() -> None:
    assert classify(200, 403) is E.AUTH and classify(299, 403) is E.AUTH


def test_an_unknown_code_is_failed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert classify(987654, 400) is E.FAILED
    assert "987654" in caplog.text


def test_an_unknown_code_in_a_webhook_is_failed() -> None:
    assert classify(987654, None) is E.FAILED


def test_error_json_becomes_a_classified_provider_error() -> None:
    payload = {
        "error": {
            "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "type": "OAuthException",
            "code": 131056,
            "error_data": {"messaging_product": "whatsapp", "details": "too many to one number"},
            "fbtrace_id": "Abc",
        }
    }
    error = provider_error(400, payload)
    assert error.error_class is E.PAIR_LIMITED
    assert (error.code, error.http_status, error.details) == (131056, 400, "too many to one number")
    assert error.title == "(Business Account, Consumer Account) pair rate limit hit"


def test_a_body_that_is_not_error_json_is_classified_by_status() -> None:
    assert provider_error(502, "<html>Bad gateway</html>").error_class is E.TRANSIENT


def test_a_success_without_message_id_is_an_unknown_outcome() -> None:
    with pytest.raises(ProviderError) as raised:
        message_id_from_response(200, {"messages": []})
    assert (raised.value.error_class, raised.value.http_status) == (E.TRANSIENT, None)
