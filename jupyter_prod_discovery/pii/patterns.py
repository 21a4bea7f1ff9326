"""Candidate patterns, context words and Presidio-backed validators for pattern entities.

The scanner finds candidates with a few class-first regular expressions (see ``NUMERIC``), then
validates each small candidate with Presidio's own rules (Luhn, IBAN mod-97, SSN invalidation,
base58check, DEA, NIF/NIE, codice fiscale, partita IVA, PESEL, HETU, personnummer, and the German
tax id, pension and health insurance numbers' and ICAO check digits) and ``phonenumbers``. Ids
of 6 to 8 digits (too short for a candidate run, and everywhere in logs) are looked for only
after a word that names them (``SHORT_ID_KEYS``). Presidio is imported lazily and fully
offline.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from functools import cache
from typing import Any

__all__ = [
    "BASE58",
    "BECH32",
    "CANDIDATES",
    "CONTEXT_WORDS",
    "HEX",
    "HEX_RUN",
    "IPV6_SHORT",
    "NUMERIC",
    "NUMERIC_RUN",
    "OPTIONAL_ENTITIES",
    "PATTERN_ENTITIES",
    "SE_PNR_RE",
    "SHORT_ID_KEYS",
    "SHORT_ID_VALUE",
    "UPPER",
    "UPPER_RUN",
    "validators",
]

PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "US_SSN",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PHONE_NUMBER",
    "UK_NHS",
    "CRYPTO",
    "MAC_ADDRESS",
    "MEDICAL_LICENSE",
    "US_BANK_NUMBER",
    "US_DRIVER_LICENSE",
    "US_ITIN",
    "US_PASSPORT",
    "UK_NINO",
    "ES_NIF",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "PL_PESEL",
    "FI_PERSONAL_IDENTITY_CODE",
    "IT_DRIVER_LICENSE",
    "IT_VAT_CODE",
    "IT_PASSPORT",
    "IT_IDENTITY_CARD",
    "ES_PASSPORT",
    "SE_PERSONNUMMER",
    "DE_TAX_ID",
    "DE_SOCIAL_SECURITY",
    "DE_ID_CARD",
    "DE_PASSPORT",
    "DE_HEALTH_INSURANCE",
    "DE_FUEHRERSCHEIN",
)
# Reported only when a policy lists them: common in technical output, rarely personal.
OPTIONAL_ENTITIES = ("DATE_TIME", "URL", "UUID")

# Emails are found from each '@' (str.find runs at memchr speed): a regex branch starting with
# the local part would be tried at every word character of the text.
EMAIL_LOCAL = re.compile(r"[\w.%+-]{1,64}$")
EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}\b")

# Candidates come from three regular expressions, each of whose branches starts with a
# character class (digits / capitals / hex digits): the regex engine then skips every other
# character with its fast prefix scan instead of trying each branch at every position. The
# word-boundary checks are lookbehinds placed *after* the first character for that reason.
# After a comma (a CSV field) only a run with separated groups (123-45-6789, 555 123 4567) is a
# candidate, so that thousands separators ("1,234,567") are not.
# Digit runs are kept as one "num" candidate and classified afterwards, so that a run that
# fails as a card can still be a phone number.
_REST = r"(?:[\d().-]|[ ](?=[\d(])){7,}\d(?![\w]|[.,]\d)"
NUMERIC = re.compile(
    rf"""
    (?P<ipv4>\d(?<![\w.]\d)\d{{0,2}}\.\d{{1,3}}\.\d{{1,3}}\.\d{{1,3}}(?![\w]|\.\d))
  | (?P<alnumd>\d(?<![\w]\d)(?:\d{{7}}[A-Z]\d{{3}}|\d{{7}}-?[A-Z]|\d{{5}}[-+A-FU-Y]\d{{3}}[0-9A-Y]|\d{{6}}[A-Z]{{2}})\b)
  | (?P<num>\+(?<![\w.,+-]\+)\d{{1,3}}[ .-]?\(?\d{_REST}
        |\((?<![\w.,+-]\()\d{_REST}
        |\d(?<![\w.,+-]\d){_REST}
        |\d(?<=,\d)\d{{0,4}}(?:[- ]\d{{2,4}}){{2,4}}(?![\w]|[.,]\d))
    """,
    re.VERBOSE | re.ASCII,  # ASCII digits only, like the scanner's gate
)
UPPER = re.compile(
    r"""
    (?P<iban>[A-Z](?<![\w][A-Z])[A-Z]\d{2}(?:[ ]?[A-Z0-9]){11,30}\b)
  | (?P<alnum>[A-Z](?<![\w][A-Z])(?:
        [A-Z]{0,2}\d{5,14}[A-Z]?
      | \d{7}-[A-Z]
      | [A-Z]{5}[0-9LMNP-V]{2}[A-EHLMPR-T][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]
      | [A-Z][ ]\d{2}[ ]\d{2}[ ]\d{2}[ ][A-D]
      | [A-Z][ ]\d{7}
      | [A-Z]\d{5}[A-Z]{2}
      | 1[B-HJ-NPR-UW-Z0-9]{7}[A-Z]
      | [CFGHJKLMNPRTVWXYZ0-9]{7}[0-9]
      )\b)
    """,
    re.VERBOSE | re.ASCII,
)
HEX = re.compile(
    r"""
    [0-9A-Fa-f](?<![\w:.-][0-9A-Fa-f])(?:
      (?P<uuid>[0-9A-Fa-f]{7}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b)
    | (?P<mac>[0-9A-Fa-f](?P<macsep>[:-])(?:[0-9A-Fa-f]{2}(?P=macsep)){4}[0-9A-Fa-f]{2}(?![\w:-])
        |[0-9A-Fa-f]{3}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b)
    | (?P<ipv6>[0-9A-Fa-f]{0,3}(?::[0-9A-Fa-f]{1,4}){7}(?![\w:]))
    )""",
    re.VERBOSE | re.ASCII,
)
# Where NUMERIC can match: runs of 7+ digit-ish characters (the last may be a capital). This plain, class-first regex
# costs a fifth of NUMERIC over a whole text; NUMERIC then runs only inside each run.
# Spelled 0-9, not \d: a category in the leading class stops the regex engine from skipping
# to the next candidate character at C speed (3x slower over a text that holds few digits).
NUMERIC_RUN = re.compile(r"[0-9(+][0-9 .()+-]{5,}[0-9A-Z]")
# How far past a run a NUMERIC match may reach (an id's letters: 160368A3076).
RUN_MARGIN = 8
# A run that is only an ISO date, maybe with the hour (every line of a timestamped log).
DATE_RUN = re.compile(r"\d{4}-\d\d-\d\d(?:[ ]\d\d)?")
# Where UPPER can match: a capital not inside a word, then 6+ capitals, digits, spaces, dashes.
UPPER_RUN = re.compile(r"[A-Z](?<![\w][A-Z])[A-Z0-9][A-Z0-9 -]{5,}", re.ASCII)
# Base58 Bitcoin addresses (P2PKH/P2SH), validated by Presidio's checksum.
BASE58 = re.compile(r"[13](?<![\w][13])[a-km-zA-HJ-NP-Z1-9]{25,34}\b", re.ASCII)
# Where HEX can match: 11+ hex digits and separators (a MAC is 14-17 characters, a UUID 36,
# a full IPv6 address 15+).
HEX_RUN = re.compile(r"[0-9A-Fa-f][0-9A-Fa-f:.-]{10,}", re.ASCII)
# Compressed IPv6 ("2001:db8::1", "fe80::1"), searched only in texts holding "::".
IPV6_SHORT = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?"
    r"(?![\w:])|(?<![\w:.])::(?:[0-9A-Fa-f]{1,4}:){0,5}[0-9A-Fa-f]{1,4}(?![\w:])",
    re.ASCII,
)
# Bech32 Bitcoin addresses, searched only in texts holding "bc1".
BECH32 = re.compile(r"\bbc1[a-z0-9]{25,59}\b")
CANDIDATES = (NUMERIC, UPPER, HEX, BASE58)

# Sub-patterns applied inside one "num" candidate (a few dozen characters).
SSN_RE = re.compile(r"(?<!\d)\d{3}([- .]?)\d{2}\1\d{4}(?!\d)")
# Presidio's card shape: 4 digits then groups of 3-4, 3-4 and 3-5 (12 to 17 digits), plus the
# 4-6-5 Amex/Diners grouping and 19-digit PANs.
CARD_RE = re.compile(
    r"(?<!\d)(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1?\d{1,3})?"
    r"|\d{4}([ -]?)\d{6}\2\d{4,5}"
    r"|\d{4}([ -]?)\d{3,4}\3\d{3,4}\3\d{1,5})(?!\d)"
)
PHONE_RE = re.compile(
    r"""
    (?<![\d.])(?:
        (?P<intl>\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4})
      | (?P<paren>\(\d{3}\)[ ]?\d{3}[ .-]\d{4})
      | (?P<sep>\d{3}(?P<sep_c>[.-])\d{3}(?P=sep_c)\d{4})
      | (?P<space>\d{3}[ ]\d{3}[ ]\d{4})
      | (?P<plain>\d{10})
    )(?!\d|\.\d)
    """,
    re.VERBOSE,
)
NHS_RE = re.compile(r"(?<!\d)\d{3}([ -]?)\d{3}\1\d{4}(?!\d)")
# Issuer prefixes: Visa 4 (13, 16, 19 digits), Mastercard 51-55/22-27, Amex 34/37, Diners
# 30/36/38/39, Discover 6011/64/65, JCB 35 and the old 15-digit 2131/1800, Maestro 50/56-69,
# UnionPay 62. Presidio's own regex accepts any 1/3/4/5/6 start.
CARD_IIN = re.compile(r"^(?:4|5[0-9]|2[2-7]|2131|1800|3[0-9]|6[0-9])")

ITIN_RE = re.compile(r"(?<!\d)9\d{2}([- ]?)(?:5\d|6[0-5]|7\d|8[0-8]|9[0-24-9])\1\d{4}(?!\d)")
BANK_RE = re.compile(r"(?<!\d)\d{8,17}(?!\d)")
PASSPORT_DIGITS_RE = re.compile(r"(?<!\d)\d{9}(?!\d)")
LICENSE_DIGITS_RE = re.compile(r"(?<!\d)(?:\d{6,14}|\d{16})(?!\d)")
# Ids of 6 to 8 digits with nothing but context to tell them (Presidio: driver licence digits
# 6-14, bank account 8-17): (key word, entity, fewest digits). Searched for in the lower-cased
# text with str.find, then the value must follow the key, with at most a few filler words
# ("number", "no.", "is") and separators between: "driver_license=1234567", "bank account
# no. 12345678", "Driver's licence: 650000". A number further away is not taken.
SHORT_ID_KEYS: tuple[tuple[str, str, int], ...] = (
    ("licen", "US_DRIVER_LICENSE", 6),
    ("driver", "US_DRIVER_LICENSE", 6),
    ("driving", "US_DRIVER_LICENSE", 6),
    ("dl#", "US_DRIVER_LICENSE", 6),
    ("dl_", "US_DRIVER_LICENSE", 6),
    ("lic#", "US_DRIVER_LICENSE", 6),
    ("account", "US_BANK_NUMBER", 8),
    ("acct", "US_BANK_NUMBER", 8),
    ("bank", "US_BANK_NUMBER", 8),
)
SHORT_ID_VALUE = re.compile(
    r"(?P<rest>[\w'\u2019]{0,16})"  # the rest of the key word: "license", "_number", "'s"
    r"(?:[ \t:=#\"'.-]{1,3}(?:number|num|nbr|nr|no|id|is|was|licen[cs]e|account)\b\.?){0,3}"
    r"[ \t:=#\"'-]{1,4}(?P<value>\d{6,8})(?![\w]|[.,:/-]?\d)",
    re.IGNORECASE,
)
# A Swedish personnummer inside one "num" candidate: YYMMDD-XXXX, YYYYMMDD-XXXX or the digits
# alone (10 or 12); Presidio's validator checks the date and the Luhn digit.
SE_PNR_RE = re.compile(r"(?:\d{2})?\d{6}-?\d{4}")
PESEL_RE = re.compile(
    r"(?<!\d)\d{2}(?:[02468][1-9]|[13579][012])(?:0[1-9]|[12]\d|3[01])\d{5}(?!\d)"
)

# Context words (lower case) that raise a candidate above threshold, from Presidio's recognizers
# plus the column names tables use for them. Context is the text just before the value on its
# line, or the header of its table column.
CONTEXT_WORDS: dict[str, tuple[str, ...]] = {
    "US_SSN": ("ssn", "social security", "social_security", "tax id", "taxpayer"),
    "CREDIT_CARD": (
        "card", "credit", "visa", "mastercard", "amex", "pan", "cc_", "cc ", "discover",
        "jcb", "diners", "maestro",
    ),
    "PHONE_NUMBER": ("phone", "tel", "mobile", "cell", "fax", "contact", "call"),
    "UK_NHS": ("nhs", "national health", "health authority"),
    "IP_ADDRESS": ("ip", "host", "addr", "client", "src", "dst", "remote"),
    "US_BANK_NUMBER": ("account", "acct", "bank", "checking", "saving", "debit", "routing"),
    "US_DRIVER_LICENSE": ("driver", "licen", "dl_", "dl#", "dl ", "permit", "driving"),
    "US_ITIN": ("itin", "taxpayer", "tax id", "tin"),
    "US_PASSPORT": ("passport", "travel document"),
    "MEDICAL_LICENSE": ("medical", "dea", "certificate", "license", "licence", "npi"),
    "PL_PESEL": ("pesel",),
    "UK_NINO": ("national insurance", "ni number", "nino", "ni_number", "nin"),
    "ES_NIF": ("dni", "nif", "documento", "identidad"),
    "ES_NIE": ("nie", "extranjero"),
    "IT_FISCAL_CODE": ("codice fiscale", "fiscal", "cf", "codice"),
    "FI_PERSONAL_IDENTITY_CODE": ("hetu", "henkilötunnus", "personal identity"),
    "IT_DRIVER_LICENSE": ("patente", "licenza", "driver", "driving", "licen"),
    "IT_VAT_CODE": ("partita iva", "partita_iva", "p.iva", "p. iva", "piva", "vat ", "vat:",
                    "vat=", "vat_", "vat#", "vat-"),
    "IT_PASSPORT": ("passaporto", "passport"),
    # Not "documento" (Presidio's word for passports and identity cards alike).
    "IT_IDENTITY_CARD": ("identit", "id card", "id_card", "cie ", "cie:", "cie=", "cie_"),
    "ES_PASSPORT": ("pasaporte", "passport"),
    "SE_PERSONNUMMER": ("personnummer", "samordningsnummer", "personal identity number",
                        "svensk id", "swedish id"),
    # Presidio's German words (it has them in German only) and their English equivalents; not
    # Presidio's "pass" (in "password") nor plain "passport" / "identity card" / "driving
    # licence", which name the US and Italian documents of the same shapes.
    "DE_TAX_ID": ("steueridentifikation", "steuer-id", "steuerid", "steuer id", "steuer_id",
                  "steuer-idnr", "identifikationsnummer", "idnr", "steuernummer", "bzst",
                  "german tax id", "tax identification number"),
    "DE_SOCIAL_SECURITY": ("rentenversicherung", "sozialversicherung", "versicherungsnummer",
                           "rvnr", "svnr", "sv-nummer", "sv nummer", "sv_nummer",
                           "social security", "social insurance", "pension insurance"),
    "DE_ID_CARD": ("personalausweis", "ausweis", "german id", "german identity",
                   "national id"),
    "DE_PASSPORT": ("reisepass", "passnummer", "pass-nr", "german passport"),
    "DE_HEALTH_INSURANCE": ("krankenversicher", "versichertennummer", "kvnr", "krankenkasse",
                            "gesundheitskarte", "egk", "health insurance"),
    "DE_FUEHRERSCHEIN": ("führerschein", "fuehrerschein", "fahrerlaubnis",
                         "german driving licen", "german driver"),
    "CRYPTO": ("wallet", "btc", "bitcoin", "crypto"),
    "MAC_ADDRESS": ("mac", "hardware", "ethernet"),
}  # fmt: skip


@cache
def _presidio() -> dict[str, Any]:
    # tldextract (imported by presidio) would fetch the public suffix list on first use.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        DeHealthInsuranceRecognizer,
        DeIdCardRecognizer,
        DePassportRecognizer,
        DeSocialSecurityRecognizer,
        DeTaxIdRecognizer,
        EsNieRecognizer,
        EsNifRecognizer,
        FiPersonalIdentityCodeRecognizer,
        IbanRecognizer,
        ItFiscalCodeRecognizer,
        ItVatCodeRecognizer,
        MacAddressRecognizer,
        MedicalLicenseRecognizer,
        PlPeselRecognizer,
        SePersonnummerRecognizer,
        UsSsnRecognizer,
    )

    return {
        "card": CreditCardRecognizer(),
        "iban": IbanRecognizer(),
        "ssn": UsSsnRecognizer(),
        "crypto": CryptoRecognizer(),
        "mac": MacAddressRecognizer(),
        "dea": MedicalLicenseRecognizer(),
        "nif": EsNifRecognizer(),
        "nie": EsNieRecognizer(),
        "cf": ItFiscalCodeRecognizer(),
        "pesel": PlPeselRecognizer(),
        "fi": FiPersonalIdentityCodeRecognizer(),
        "vat": ItVatCodeRecognizer(),
        "se": SePersonnummerRecognizer(),
        "de_tax": DeTaxIdRecognizer(supported_language="en"),
        "de_sv": DeSocialSecurityRecognizer(supported_language="en"),
        "de_id": DeIdCardRecognizer(supported_language="en"),
        "de_pass": DePassportRecognizer(supported_language="en"),
        "de_kv": DeHealthInsuranceRecognizer(supported_language="en"),
    }


def presidio_check(name: str, text: str) -> bool:
    """Presidio's own validator for a recognizer: validate_result True, invalidate False."""
    rec = _presidio()[name]
    if name == "mac":
        return not rec.invalidate_result(text)
    if name == "de_id" and text[:1] == "T" and text[1:].isdigit():
        # The identity card before 2010 (T and 8 digits) has no check digit: Presidio's
        # validator leaves it at the pattern's score (None), so its context decides.
        return True
    try:
        return rec.validate_result(text) is True
    except (ValueError, IndexError, KeyError):
        return False


def luhn_ok(digits: str) -> bool:
    """Presidio's Luhn check plus the issuer prefixes Presidio's regex encodes.

    Nine ids in ten fail the check digit: the same Luhn sum in C-level steps turns those away
    before Presidio's validator (which then decides the rest, and any non-ASCII input).
    """
    if not CARD_IIN.match(digits):
        return False
    if digits.isascii() and digits.isdigit() and not _luhn_sum_ok(digits):
        return False
    return bool(_presidio()["card"].validate_result(digits))


# Every second digit from the right is doubled and its digits added: 0-9 become these.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def _luhn_sum_ok(digits: str) -> bool:
    """The Luhn sum of ASCII ``digits`` is a multiple of 10 (Presidio's rule, same digits).

    The digits, every second one from the right replaced by its doubled digits' sum, are
    added as their ASCII codes (48 more than each digit) by ``sum`` over the bytes.
    """
    rev = digits[::-1]
    codes = (rev[::2] + rev[1::2].translate(_LUHN_DOUBLED)).encode("ascii")
    return (sum(codes) - 48 * len(codes)) % 10 == 0


def iban_ok(text: str) -> bool:
    """Presidio's IBAN check digits and per-country format."""
    return _presidio()["iban"].validate_result(text) is True


def ssn_ok(text: str) -> bool:
    """Presidio's SSN invalidation rules (same delimiters, no zero groups, no test numbers)."""
    digits = text if text.isascii() and text.isdigit() else re.sub(r"\D", "", text)
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
    _presidio()
    return {
        "card": luhn_ok,
        "iban": iban_ok,
        "ssn": ssn_ok,
        "nhs": nhs_ok,
        "phone": phone_ok,
        "ip": ip_ok,
    }
