"""Phone numbers to E.164 (SPEC §4 rule 10), with a reason a person can act on when they fail.

WhatsApp addresses recipients by E.164 number, and deduplication and opt-outs compare E.164
strings, so every number is normalized once, at import. Only numbers that `phonenumbers`
considers valid pass: a "possible" number would only fail later, one message at a time.

`phonenumbers.parse` costs ~40 µs and `is_valid_number` up to 30 µs for +1 numbers, too slow for
100,000-row imports; plain-digit inputs take a fast path that builds the number directly in the
cases where `parse` provably gives the same result (no national or international prefix to
strip), and anything else goes through `phonenumbers.parse`.
"""

import re
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberDesc,
    ValidationResult,
)

# Separators people type or spreadsheets keep; `parse` ignores them too.
_SEPARATORS = " -.()\t\u00a0"
_LETTERS = re.compile(r"[A-Za-z]")
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_LENGTH_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short (a local number without its area code)",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
}

# Country calling codes as written ("1", "44"): no key starts with 0, as `parse` reads none.
_COUNTRY_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
# Number types, commonest first; `is_valid_number_for_region` tries the rare ones first.
_TYPES = (
    "mobile",
    "fixed_line",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


class InvalidPhoneNumber(ValueError):
    """The number cannot receive WhatsApp messages; `reason` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_region(region: str) -> str:
    """The region code in upper case; ValueError for a code `phonenumbers` does not know."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {region!r}: use a two-letter country code such as US")
    return code


def normalize_phone(raw: str, default_region: str) -> str:
    """`raw` as E.164 ("+12025550100"), reading national numbers as numbers of `default_region`.

    Accepts "+1 202-555-0100", "(202) 555-0100", "202.555.0100", "0044 20 7946 0958" (a leading
    00 always means an international number) and the default region's own international prefix
    ("011 44 ..." in the US). Raises InvalidPhoneNumber with the reason otherwise, and ValueError
    for an unknown region. To normalize many numbers, use one PhoneNormalizer.
    """
    return PhoneNormalizer(default_region)(raw)


@dataclass(frozen=True)
class _CountryRules:
    """What the fast path needs of one country code's main region, compiled once."""

    country_code: int
    country_code_text: str  # as written in a number
    national_prefix: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None
    general: tuple[frozenset[int], re.Pattern[str]] | None
    types: tuple[tuple[frozenset[int], re.Pattern[str]], ...]
    # National number lengths valid in some region sharing the code; None: not known.
    lengths_anywhere: frozenset[int] | None

    @classmethod
    def of(cls, metadata: PhoneMetadata) -> "_CountryRules":
        def compiled(pattern: str | None) -> re.Pattern[str] | None:
            return re.compile(pattern) if pattern else None

        def desc(d: PhoneNumberDesc | None) -> tuple[frozenset[int], re.Pattern[str]] | None:
            if d is None or not d.national_number_pattern:
                return None
            return frozenset(d.possible_length or ()), re.compile(d.national_number_pattern)

        types = (desc(getattr(metadata, kind)) for kind in _TYPES)
        country_code = int(metadata.country_code or 0)
        return cls(
            country_code=country_code,
            country_code_text=str(country_code),
            national_prefix=compiled(metadata.national_prefix_for_parsing),
            international_prefix=compiled(metadata.international_prefix),
            general=desc(metadata.general_desc),
            types=tuple(t for t in types if t is not None),
            lengths_anywhere=_lengths_anywhere(country_code),
        )

    def valid_anywhere(self, national: str) -> bool:
        """`is_valid_number`: valid in some region of the country code (Jersey in +44, Canada
        in +1), where the walk over the regions is skipped when no region has this length."""
        if self.lengths_anywhere is not None and len(national) not in self.lengths_anywhere:
            return False
        number = PhoneNumber(country_code=self.country_code, national_number=int(national))
        return bool(phonenumbers.is_valid_number(number))

    by_length: dict[int, re.Pattern[str] | None] = field(default_factory=dict, compare=False)

    def valid(self, national: str) -> bool:
        """`is_valid_number_for_region` for the region: the general pattern and some number
        type's pattern match (which type does not matter), tried as one pattern per length
        (the general one as a lookahead, then the types possible at that length), compiled
        once per length."""
        size = len(national)
        try:
            pattern = self.by_length[size]
        except KeyError:
            pattern = self.by_length[size] = self._pattern_for(size)
        return pattern is not None and pattern.fullmatch(national) is not None

    def _pattern_for(self, size: int) -> re.Pattern[str] | None:
        if self.general is None:
            return None
        lengths, general = self.general
        if lengths and size not in lengths:
            return None
        types = [p.pattern for lengths, p in self.types if not lengths or size in lengths]
        if not types:
            return None
        alternatives = "|".join(f"(?:{p})" for p in types)
        return re.compile(f"(?=(?:{general.pattern})\\Z)(?:{alternatives})")


def _lengths_anywhere(country_code: int) -> frozenset[int] | None:
    """The union of the general possible lengths of the code's regions: `is_valid_number`
    checks a number against its region's general description, lengths first."""
    lengths: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        general = metadata.general_desc if metadata is not None else None
        if general is None or not general.possible_length:
            return None
        lengths.update(general.possible_length)
    return frozenset(lengths)


class PhoneNormalizer:
    """`normalize_phone` for many numbers of one default region (an import): it compiles the
    metadata of the country codes it meets once, for its own lifetime only."""

    def __init__(self, default_region: str) -> None:
        self.region = check_region(default_region)
        self._rules: dict[int, _CountryRules | None] = {}
        self._default = self._rules_for(phonenumbers.country_code_for_region(self.region))

    def __call__(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise InvalidPhoneNumber("empty")
        compact = _without_separators(text)
        if compact.startswith("00"):
            # No national number starts with 00; the US dials 011 abroad, but people write 00.
            compact = "+" + compact[2:]
            text = compact
        plain = self._plain_number(compact)
        if plain is None:
            return _parse_e164(text, self.region)
        rules, national = plain
        if rules.valid(national) or rules.valid_anywhere(national):
            return f"+{rules.country_code}{national}"
        number = PhoneNumber(country_code=rules.country_code, national_number=int(national))
        raise InvalidPhoneNumber(_invalid_reason(number, text))

    def _rules_for(self, country_code: int) -> _CountryRules | None:
        if country_code not in self._rules:
            region = phonenumbers.region_code_for_country_code(country_code)
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
            self._rules[country_code] = None if metadata is None else _CountryRules.of(metadata)
        return self._rules[country_code]

    def _plain_number(self, compact: str) -> tuple[_CountryRules, str] | None:
        """The country code's rules and the national number, when `compact` is plain digits
        that `parse` would take as they are (so its validity, and the reason it is invalid,
        are those of `parse`'s number); None whenever in doubt (the full parse then decides)."""
        international = compact.startswith("+")
        digits = compact[1:] if international else compact
        if not (3 <= len(digits) <= 17 and digits.isascii() and digits.isdigit()):
            return None
        if international:
            for size in (1, 2, 3):  # as `parse` reads the code: the shortest known one
                country_code = _COUNTRY_CODES.get(digits[:size])
                if country_code is not None:
                    break
            else:
                return None
            national = digits[size:]
            rules = self._rules_for(country_code)
        else:
            rules = self._default
            if rules is None:
                return None
            national = digits
            # `parse` would look for the region's international prefix or country code here.
            if national.startswith(rules.country_code_text):
                return None
            if rules.international_prefix and rules.international_prefix.match(national):
                return None
        # A leading zero (Italian-style) or a national prefix to strip: leave it to `parse`.
        if rules is None or len(national) < 2 or national.startswith("0"):
            return None
        if rules.national_prefix and rules.national_prefix.match(national):
            return None
        return rules, national


def _without_separators(text: str) -> str:
    # A `replace` per separator: C-level searches that return at once when the separator is
    # absent, several times faster than `str.translate` (a lookup per character).
    for separator in _SEPARATORS:
        text = text.replace(separator, "")
    return text


def _is_valid(number: PhoneNumber, region: str) -> bool:
    # A number valid for one region of its country code is a valid number; trying the likely
    # region first (the default one, else the code's main region) skips `is_valid_number`'s
    # walk over every region sharing the code (25 share +1).
    country_code = number.country_code
    if country_code is None:
        return False
    if phonenumbers.country_code_for_region(region) != country_code:
        region = phonenumbers.region_code_for_country_code(country_code)
    if phonenumbers.is_valid_number_for_region(number, region):
        return True
    return bool(phonenumbers.is_valid_number(number))


def _parse_e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        reason = _PARSE_REASONS.get(error.error_type, "not a number")
        if _LETTERS.search(text):
            reason = "not a number"
        raise InvalidPhoneNumber(reason) from None
    if number.extension:
        raise InvalidPhoneNumber("has an extension: WhatsApp needs a mobile number")
    if _LETTERS.search(text):
        # `parse` reads vanity numbers ("1-800-FLOWERS"); a contact list should not hold them.
        raise InvalidPhoneNumber("not a number (contains letters)")
    if _is_valid(number, region):
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    raise InvalidPhoneNumber(_invalid_reason(number, text))


def _invalid_reason(number: PhoneNumber, text: str) -> str:
    """Why a parsed number (`text` as written) is not valid."""
    number_region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    length = phonenumbers.is_possible_number_with_reason(number)
    if length in _LENGTH_REASONS:
        reason = _LENGTH_REASONS[length]
    elif length == ValidationResult.INVALID_LENGTH:
        reason = f"wrong length for region {number_region}"
    else:
        reason = f"invalid for region {number_region}"
    if not text.startswith("+") and _valid_as_international(text):
        reason += "; if it is an international number, write it with + and its country code"
    return reason


def _valid_as_international(text: str) -> bool:
    """Whether "+" + `text` is valid: a hint only, never a silent rewrite (a mistyped national
    number could be some stranger's number abroad)."""
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse("+" + text, None)))
    except NumberParseException:
        return False
