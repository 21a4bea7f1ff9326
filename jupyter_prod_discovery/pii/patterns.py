"""Candidate patterns, context words and Presidio-backed validators for pattern entities.

The scanner finds candidates with one combined regular expression (one pass over the text), then
validates each small candidate with Presidio's own checksum rules (Luhn, IBAN mod-97, SSN
invalidation) and ``phonenumbers``. Presidio is imported lazily and fully offline.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = ["CANDIDATES", "CONTEXT_WORDS", "PATTERN_ENTITIES", "validators"]

PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "US_SSN",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "UK_NHS",
)

# Emails are found from each '@' (str.find runs at memchr speed): a regex branch starting with
# the local part would be tried at every word character of the text.
EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}$")
EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}\b")

# One alternation, each branch a named group. Digit runs are kept as one "num" candidate and
# classified afterwards, so that a run that fails as a card can still be a phone number.
CANDIDATES = re.compile(
    r"""
    (?P<iban>\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b)
  | (?P<ipv6>(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]))
  | (?P<ipv4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d))
  | (?P<num>(?<![\w.,+-])(?:\+\d{1,3}[ .-]?)?\(?\d(?:[\d().-]|[ ](?=[\d(])){7,}\d(?![\w]|[.,]\d))
    """,
    re.VERBOSE | re.ASCII,  # ASCII digits only, like the scanner's gate
)

# Sub-patterns applied inside one "num" candidate (a few dozen characters).
SSN_RE = re.compile(r"(?<!\d)\d{3}([- .]?)\d{2}\1\d{4}(?!\d)")
CARD_RE = re.compile(
    r"(?<!\d)(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1?\d{1,3})?|\d{4}([ -]?)\d{6}\2\d{5})(?!\d)"
)
PHONE_RE = re.compile(
    r"""
    (?<![\d.])(?:
        (?P<intl>\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4})
      | (?P<paren>\(\d{3}\)[ ]?\d{3}[ .-]\d{4})
      | (?P<sep>\d{3}(?P<sep_c>[.-])\d{3}(?P=sep_c)\d{4})
      | (?P<space>\d{3}[ ]\d{3}[ ]\d{4})
      | (?P<plain>\d{10})
    )(?!\d|\.\d)
    """,
    re.VERBOSE,
)
NHS_RE = re.compile(r"(?<!\d)\d{3}([ -]?)\d{3}\1\d{4}(?!\d)")
CARD_IIN = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|6011|65|64[4-9]|35|62)")

CONTEXT_WORDS: dict[str, tuple[str, ...]] = {
    "US_SSN": ("ssn", "social security", "social_security", "tax id", "taxpayer"),
    "CREDIT_CARD": ("card", "credit", "visa", "mastercard", "amex", "pan", "cc_"),
    "PHONE_NUMBER": ("phone", "tel", "mobile", "cell", "fax", "contact", "call"),
    "UK_NHS": ("nhs",),
    "IP_ADDRESS": ("ip", "host", "addr", "client", "src", "dst", "remote"),
}


@cache
def _presidio() -> dict[str, Any]:
    # tldextract (imported by presidio) would fetch the public suffix list on first use.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        UsSsnRecognizer,
    )

    return {
        "card": CreditCardRecognizer(),
        "iban": IbanRecognizer(),
        "ssn": UsSsnRecognizer(),
    }


def luhn_ok(digits: str) -> bool:
    """Presidio's Luhn check plus the issuer prefixes Presidio's regex encodes."""
    return bool(CARD_IIN.match(digits)) and bool(_presidio()["card"].validate_result(digits))


def iban_ok(text: str) -> bool:
    """Presidio's IBAN check digits and per-country format."""
    return _presidio()["iban"].validate_result(text) is True


def ssn_ok(text: str) -> bool:
    """Presidio's SSN invalidation rules (same delimiters, no zero groups, no test numbers)."""
    digits = re.sub(r"\D", "", text)
    if digits[0] == "9":  # ITINs and never-issued areas start with 9
        return False
    return not _presidio()["ssn"].invalidate_result(text)


def nhs_ok(text: str) -> bool:
    """NHS number modulus-11 check digit."""
    d = [int(c) for c in text if c.isdigit()]
    if len(d) != 10:
        return False
    total = sum(v * (10 - i) for i, v in enumerate(d[:9]))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == d[9]


_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")


_NANP_MEMO: dict[str, bool] = {}


def phone_ok(text: str) -> bool:
    """A real, assignable number in one of Presidio's default regions (via phonenumbers).

    phonenumbers takes ~0.2 ms per number. For 10-digit national numbers the answer depends on
    the area code and exchange (the first 6 digits), so it is memoized on them: a table of
    a thousand phone numbers costs a few dozen real validations.
    """
    if not text.startswith("+"):
        digits = "".join(c for c in text if c.isdigit())
        if len(digits) == 10:
            key = digits[:6]
            hit = _NANP_MEMO.get(key)
            if hit is None:
                hit = _phone_ok(text)
                if len(_NANP_MEMO) < 100_000:
                    _NANP_MEMO[key] = hit
            return hit
    return _phone_ok(text)


def _phone_ok(text: str) -> bool:
    import phonenumbers

    for region in ("ZZ",) if text.startswith("+") else _PHONE_REGIONS:
        try:
            num = phonenumbers.parse(text, None if region == "ZZ" else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return True
    return False


def ip_ok(text: str) -> bool:
    """A syntactically valid IPv4 or IPv6 address (not an unspecified or bare '::')."""
    colons = text.count(":")
    if colons and (len(text) < 6 or (colons != 7 and "::" not in text)):
        return False
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not addr.is_unspecified


def validators() -> dict[str, Callable[[str], bool]]:
    """The validators by name, importing Presidio on first use."""
    return {
        "card": luhn_ok,
        "iban": iban_ok,
        "ssn": ssn_ok,
        "nhs": nhs_ok,
        "phone": phone_ok,
        "ip": ip_ok,
    }
