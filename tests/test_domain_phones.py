"""Phone normalization as a person importing a contact list would check it."""

import random
from collections.abc import Callable
from functools import partial

import phonenumbers
import pytest

from whatsapp_campaigns.domain.phones import (
    InvalidPhoneNumber,
    PhoneNormalizer,
    _parse_e164,
    normalize_phone,
)


@pytest.mark.parametrize(
    "raw",
    [
        "+12025550100",
        "+1 202-555-0100",
        "+1 (202) 555-0100",
        "(202) 555-0100",
        "202.555.0100",
        "202 555 0100",
        "12025550100",
        "001 202 555 0100",
        "011 1 202 555 0100",
        "  +1 202 555 0100  ",
    ],
)
def test_us_formats_normalize_to_e164(raw: str) -> None:
    assert normalize_phone(raw, "US") == "+12025550100"


def test_national_number_is_read_in_the_default_region() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"


def test_00_prefix_means_international_even_in_the_us() -> None:
    assert normalize_phone("0044 20 7946 0958", "US") == "+442079460958"


def test_international_number_ignores_the_default_region() -> None:
    assert normalize_phone("+44 20 7946 0958", "US") == "+442079460958"


def test_national_prefix_written_after_country_code_is_dropped() -> None:
    assert normalize_phone("+44 (0)20 7946 0958", "US") == "+442079460958"


def test_italian_leading_zero_is_kept() -> None:
    assert normalize_phone("06 6982 1234", "IT") == "+390669821234"


def test_region_code_is_case_insensitive() -> None:
    assert normalize_phone("(202) 555-0100", "us") == "+12025550100"


def test_sandbox_magic_numbers_are_valid() -> None:
    assert normalize_phone("+1 202 555 0106", "US") == "+12025550106"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "not a number"),
        ("12", "too short"),
        ("+1 202 555 01", "too short"),
        ("+999 1234567", "unknown country code"),
        ("+01 202 555 0143", "unknown country code"),
        ("+1 000 555 0100", "invalid for region US"),
        ("+1 202 555 0100 0000 0000", "too long"),
    ],
)
def test_invalid_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize_phone(raw, "US")
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_invalid_phone_number_is_a_value_error() -> None:
    assert issubclass(InvalidPhoneNumber, ValueError)


def test_number_with_extension_is_refused() -> None:
    with pytest.raises(InvalidPhoneNumber, match="extension"):
        normalize_phone("+1 202 555 0100 ext. 5", "US")


def test_vanity_letters_are_refused() -> None:
    with pytest.raises(InvalidPhoneNumber, match="not a number"):
        normalize_phone("1-800-FLOWERS", "US")


def test_international_number_without_plus_gets_a_hint_not_a_guess() -> None:
    with pytest.raises(InvalidPhoneNumber, match=r"write it with \+"):
        normalize_phone("4420 7946 0958", "US")


def test_unknown_region_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError, match="unknown region") as caught:
        normalize_phone("+12025550100", "XX")
    assert not isinstance(caught.value, InvalidPhoneNumber)


def test_number_valid_only_in_another_region_of_its_country_code_passes() -> None:
    # +1 416 is Toronto: not a US number, but valid (Canada shares +1).
    assert normalize_phone("+1 416 555 0199", "US") == "+14165550199"
    assert normalize_phone("(416) 555-0199", "US") == "+14165550199"


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IT", "IN", "BR", "RU", "AR", "MX"])
def test_normalizer_agrees_with_phonenumbers(region: str) -> None:
    """The fast path must accept exactly what `phonenumbers.parse` + `is_valid_number` accept,
    with the same E.164 result, for national and international inputs."""
    rng = random.Random(region)
    normalizer = PhoneNormalizer(region)
    country_code = phonenumbers.country_code_for_region(region)
    example = phonenumbers.example_number(region)
    assert example is not None
    length = len(str(example.national_number))
    inputs: list[str] = []
    for _ in range(400):
        digits = str(rng.randint(10 ** (length - 1), 10**length - 1))
        inputs += [
            digits,
            f"+{country_code}{digits}",
            f"0{digits}",
            f"+{rng.randint(1, 999)}{digits}",
        ]
    for raw in inputs:
        try:
            expected: str | None = None
            number = phonenumbers.parse(raw, region)
            if phonenumbers.is_valid_number(number) and not number.extension:
                expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            pass
        try:
            got: str | None = normalizer(raw)
        except InvalidPhoneNumber:
            got = None
        if raw.startswith("00"):
            continue  # we read 00 as international everywhere; `parse` only where it is the IDD
        assert got == expected, raw


def _outcome(check: Callable[[], str]) -> str:
    try:
        return check()
    except InvalidPhoneNumber as error:
        return f"invalid: {error.reason}"


@pytest.mark.parametrize("region", ["US", "GB", "DE", "IT", "IN", "BR"])
def test_normalizer_gives_the_full_parses_reason_for_invalid_numbers(region: str) -> None:
    """Plain-digit numbers are judged without `phonenumbers.parse`, also when invalid: the
    answer and the reason must be the full parse's, at every length."""
    rng = random.Random(region)
    normalizer = PhoneNormalizer(region)
    country_code = phonenumbers.country_code_for_region(region)
    invalid = 0
    for _ in range(300):
        digits = str(rng.randint(10**2, 10**15)).zfill(rng.randint(3, 15))[: rng.randint(3, 15)]
        for raw in (digits, f"+{country_code}{digits}", f"+{rng.randint(1, 999)}{digits}"):
            if raw.startswith("00"):
                continue  # we read 00 as international everywhere; `parse` only where it is the IDD
            got = _outcome(partial(normalizer, raw))
            assert got == _outcome(partial(_parse_e164, raw, region)), raw
            invalid += got.startswith("invalid")
    assert invalid > 300  # the invalid paths were taken
