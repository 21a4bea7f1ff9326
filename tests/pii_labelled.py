"""A generated, labelled PII evaluation set with realistic variety, for the quality harness
(``benchmarks/pii_quality.py``) and the tests.

Every value is valid for its kind (checksums, issuer prefixes, assignable area codes) and is
labelled with its exact span. Variety:

- locales: names and cities of eight locales (US, UK, DE, FR, ES, IT, PL, NL, BR) written by
  hand here (*not* taken from the gazetteer's source, so that name recall is not circular),
  international phone numbers and IBANs of several countries, the EU national ids;
- documents: prose sentences (context words as people write them), DataFrame text reprs and
  HTML tables *with* telling headers and *without* (``col_0``...; only values that identify
  themselves are labelled there, a bare 9-digit number with no header is nobody's passport),
  log lines (``key=value``);
- negatives: technical output that must stay quiet (numeric tables, arrays, tracebacks, code,
  URLs, hashes, UUIDs, package lists, training logs, configuration, prose about code).

Values of entities that need context (bank, passport, driver licence, ITIN, NHS, PESEL,
medical licence, the Italian ids) are always written with it (a key, a header or a phrase), as
Presidio's recognizers also require; some of them are 6 to 8 digits only (driver licences of
the states that issue digits, 8-digit bank accounts), which nothing but that context tells.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable

from tests import pii_corpus as base
from tests.pii_corpus import Doc, fill, log_doc, table

FIRST = {
    "us": ["James", "Mary", "Robert", "Patricia", "Michael", "Jennifer", "David", "Linda",
           "Tyrone", "Keisha", "Brandon", "Ashley", "Darnell", "Brittany"],
    "uk": ["Oliver", "Amelia", "Harry", "Isla", "George", "Poppy", "Alfie", "Freya", "Nigel",
           "Siobhan"],
    "de": ["Lukas", "Anna", "Jonas", "Lea", "Felix", "Hannah", "Maximilian", "Jürgen",
           "Ursula", "Dieter", "Katrin"],
    "fr": ["Louis", "Camille", "Hugo", "Léa", "Jules", "Manon", "Théo", "Chloé", "Amélie",
           "Benoît"],
    "es": ["Alejandro", "Lucía", "Pablo", "Carmen", "Javier", "Sofía", "Álvaro", "Pilar",
           "Iñaki", "Montserrat"],
    "it": ["Francesco", "Giulia", "Alessandro", "Chiara", "Lorenzo", "Federica", "Matteo",
           "Giorgia", "Salvatore", "Rosalba"],
    "pl": ["Jakub", "Zuzanna", "Kacper", "Wiktoria", "Szymon", "Agnieszka", "Wojciech",
           "Małgorzata", "Krzysztof", "Grzegorz"],
    "nl": ["Daan", "Emma", "Sem", "Tess", "Bram", "Sanne", "Joris", "Femke", "Maarten"],
    "br": ["João", "Ana", "Gabriel", "Beatriz", "Rafael", "Larissa", "Thiago", "Juliana",
           "Rodrigo", "Fernanda"],
}  # fmt: skip
LAST = {
    "us": ["Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Washington", "Jackson",
           "Thompson", "Okafor", "Nguyen", "Patel"],
    "uk": ["Taylor", "Davies", "Evans", "Wilson", "Roberts", "Hughes", "Edwards", "Thomas",
           "Fitzgerald", "Cartwright"],
    "de": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
           "Hoffmann", "Schäfer"],
    "fr": ["Martin", "Bernard", "Dubois", "Durand", "Lefebvre", "Moreau", "Laurent", "Girard",
           "Rousseau", "Fontaine"],
    "es": ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez",
           "Pérez", "Gómez", "Jiménez"],
    "it": ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
           "Marino", "Greco"],
    "pl": ["Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
           "Zieliński", "Szymański", "Woźniak"],
    "nl": ["Jansen", "Visser", "Smit", "Bakker", "Mulder", "Vos", "Dekker", "Brouwer"],
    "br": ["Silva", "Santos", "Oliveira", "Souza", "Pereira", "Almeida", "Carvalho", "Ribeiro",
           "Gomes", "Barbosa"],
}  # fmt: skip
CITIES = {
    "us": ["Chicago", "Houston", "Phoenix", "Seattle", "Denver", "Boston", "Atlanta"],
    "uk": ["Manchester", "Leeds", "Bristol", "Glasgow", "Cardiff"],
    "de": ["München", "Hamburg", "Köln", "Stuttgart", "Leipzig"],
    "fr": ["Lyon", "Marseille", "Toulouse", "Bordeaux", "Lille"],
    "es": ["Madrid", "Sevilla", "Valencia", "Bilbao", "Zaragoza"],
    "it": ["Milano", "Napoli", "Torino", "Palermo", "Bologna"],
    "pl": ["Kraków", "Wrocław", "Gdańsk", "Poznań", "Łódź"],
    "nl": ["Utrecht", "Eindhoven", "Groningen", "Rotterdam"],
    "br": ["Recife", "Salvador", "Fortaleza", "Curitiba", "Manaus"],
}
LOCALES = tuple(FIRST)
INTL_PHONES = {  # (country code, national significant number pattern) of real, valid ranges
    "uk": ("+44", "7{}{}{} {}{}{}{}{}{}"),
    "de": ("+49", "151 {}{}{}{}{}{}{}{}"),
    "fr": ("+33", "6 {}{} {}{} {}{} {}{}"),
    "es": ("+34", "6{}{} {}{}{} {}{}{}"),
    "it": ("+39", "3{}{} {}{}{} {}{}{}{}"),
    "pl": ("+48", "60{} {}{}{} {}{}{}"),
    "nl": ("+31", "6 {}{}{}{} {}{}{}{}"),
    "br": ("+55", "11 9{}{}{}{}-{}{}{}{}"),
}

ENTITIES = (
    "EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER",
    "UK_NHS", "CRYPTO", "MAC_ADDRESS", "MEDICAL_LICENSE", "US_BANK_NUMBER", "US_DRIVER_LICENSE",
    "US_ITIN", "US_PASSPORT", "UK_NINO", "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "PL_PESEL",
    "FI_PERSONAL_IDENTITY_CODE", "IT_DRIVER_LICENSE", "IT_VAT_CODE", "IT_PASSPORT",
    "IT_IDENTITY_CARD", "ES_PASSPORT", "SE_PERSONNUMMER", "DE_TAX_ID", "DE_SOCIAL_SECURITY",
    "DE_ID_CARD", "DE_PASSPORT", "DE_HEALTH_INSURANCE", "DE_FUEHRERSCHEIN", "PERSON", "LOCATION",
    "DATE_OF_BIRTH",
)  # fmt: skip
# Values that identify themselves (checksums, distinctive shapes): labelled in header-less tables.
SELF_EVIDENT = frozenset(
    {"EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "MAC_ADDRESS", "CRYPTO",
     "ES_NIF", "ES_NIE", "IT_FISCAL_CODE", "FI_PERSONAL_IDENTITY_CODE", "UK_NINO", "PERSON"}
)  # fmt: skip


# --- values ---------------------------------------------------------------------------------
def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def card(rng: random.Random) -> str:
    kind = rng.choice(
        ["visa16", "visa13", "mc", "mc2", "amex", "diners14", "jcb15", "jcb16", "maestro12",
         "maestro19", "discover"]
    )  # fmt: skip
    prefix, length = {
        "visa16": ("4", 16), "visa13": ("4", 13), "mc": (f"5{rng.randint(1, 5)}", 16),
        "mc2": (f"22{rng.randint(21, 99)}", 16), "amex": (rng.choice(["34", "37"]), 15),
        "diners14": (rng.choice(["300", "305", "36", "38"]), 14),
        "jcb15": (rng.choice(["2131", "1800"]), 15), "jcb16": ("35", 16),
        "maestro12": (rng.choice(["5018", "6304", "6759"]), 12),
        "maestro19": (rng.choice(["5018", "6304"]), 19), "discover": ("6011", 16),
    }[kind]  # fmt: skip
    n = base._luhn_complete(prefix, length, rng)
    sep = rng.choice([" ", "-", "", ""])
    if length == 15 and kind == "amex":
        return sep.join([n[:4], n[4:10], n[10:]])
    if length == 16:
        return sep.join(n[i : i + 4] for i in range(0, 16, 4))
    return n  # other lengths are written as one run, as card files and APIs print them


def _b58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def crypto(rng: random.Random) -> str:
    payload = bytes([rng.choice([0, 5])]) + bytes(rng.getrandbits(8) for _ in range(20))
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    return _b58(payload + check)


def dea(rng: random.Random) -> str:
    letters = rng.choice("ABFGMPRX") + rng.choice(string.ascii_uppercase)
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return letters + "".join(map(str, d)) + str(check)


def nhs(rng: random.Random) -> str:
    while True:
        d = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(v * (10 - i) for i, v in enumerate(d)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            s = "".join(map(str, d)) + str(check)
            return rng.choice([f"{s[:3]} {s[3:6]} {s[6:]}", s, f"{s[:3]}-{s[3:6]}-{s[6:]}"])


def nino(rng: random.Random) -> str:
    a = rng.choice("ABCEGHJKLMNPRSTWXYZ") + rng.choice("ABCEGHJKLMNPRSTWXYZ")
    while a in ("BG", "GB", "NK", "KN", "NT", "TN", "ZZ"):
        a = rng.choice("ABCEGHJKLMNPRSTWXYZ") + rng.choice("ABCEGHJKLMNPRSTWXYZ")
    d = _digits(rng, 6)
    s = rng.choice("ABCD")
    return rng.choice([f"{a}{d}{s}", f"{a} {d[:2]} {d[2:4]} {d[4:]} {s}"])


def nif(rng: random.Random) -> str:
    n = rng.randint(10**7, 10**8 - 1)
    return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"


def nie(rng: random.Random) -> str:
    p = rng.choice("XYZ")
    n = rng.randint(10**6, 10**7 - 1)
    v = int(str("XYZ".index(p)) + f"{n:07d}")
    return f"{p}{n:07d}{'TRWAGMYFPDXBNJZSQVHLCKE'[v % 23]}"


def fiscal_code(rng: random.Random) -> str:
    from jupyter_prod_discovery.pii import patterns

    rec = patterns._presidio()["cf"]
    while True:
        body = "".join(rng.choice("BCDFGHLMNPRSTVZ") for _ in range(6))
        body += f"{rng.randint(40, 99)}{rng.choice('ABCDEHLMPRST')}{rng.randint(1, 28):02d}"
        body += f"{rng.choice('ABCDEFGHILM')}{rng.randint(100, 999)}"
        for c in string.ascii_uppercase:
            if rec.validate_result(body + c):
                return body + c


def pesel(rng: random.Random) -> str:
    yy, mm, dd = rng.randint(40, 99), rng.randint(1, 12), rng.randint(1, 28)
    s = f"{yy:02d}{mm:02d}{dd:02d}{_digits(rng, 4)}"
    w = [1, 3, 7, 9, 1, 3, 7, 9, 1, 3]
    return s + str((10 - sum(int(c) * k for c, k in zip(s, w, strict=True)) % 10) % 10)


def fi_code(rng: random.Random) -> str:
    dd, mm, yy = rng.randint(1, 28), rng.randint(1, 12), rng.randint(0, 99)
    sep = rng.choice("-A")
    n = rng.randint(2, 899)
    v = int(f"{dd:02d}{mm:02d}{yy:02d}{n:03d}")
    return f"{dd:02d}{mm:02d}{yy:02d}{sep}{n:03d}{'0123456789ABCDEFHJKLMNPRSTUVWXY'[v % 31]}"


def it_driver_license(rng: random.Random) -> str:
    """Presidio's two shapes: two letters, 7 digits, a letter; or U1 and 8 characters."""
    if rng.random() < 0.7:
        return f"{_letters(rng, 2)}{_digits(rng, 7)}{_letters(rng, 1)}"
    body = "".join(rng.choice("BCDEFGHJKLMNPRSTUWXYZ0123456789") for _ in range(7))
    return f"U1{body}{_letters(rng, 1)}"


def it_vat_code(rng: random.Random) -> str:
    """A partita IVA (7-digit number, 3-digit office, Luhn check digit), bare or with IT."""
    body = f"{rng.randint(1, 9_999_999):07d}{rng.randint(1, 100):03d}"
    odd = sum(int(c) for c in body[0::2])
    even = sum(int(c) * 2 - 9 if int(c) * 2 > 9 else int(c) * 2 for c in body[1::2])
    code = body + str((10 - (odd + even) % 10) % 10)
    return rng.choice([code, code, f"IT{code}"])


def it_identity_card(rng: random.Random) -> str:
    """Paper card (AB1234567, AB 1234567), CIE 2.0 (1234567AB) or CIE 3.0 (CA12345AB)."""
    kind = rng.choice(["paper", "paper_space", "cie2", "cie3"])
    if kind == "paper":
        return f"{_letters(rng, 2)}{_digits(rng, 7)}"
    if kind == "paper_space":
        return f"{_letters(rng, 2)} {_digits(rng, 7)}"
    if kind == "cie2":
        return f"{_digits(rng, 7)}{_letters(rng, 2)}"
    return f"C{_letters(rng, 1)}{_digits(rng, 5)}{_letters(rng, 2)}"


def intl_phone(rng: random.Random, loc: str) -> str:
    """A number of ``loc``'s mobile range that ``phonenumbers`` holds valid (some blocks of a
    range are unassigned: drawn again, so that every label is a real number)."""
    import phonenumbers

    cc, pat = INTL_PHONES[loc]
    while True:
        n = f"{cc} " + pat.format(*(rng.randint(0, 9) for _ in range(pat.count("{}"))))
        if phonenumbers.is_valid_number(phonenumbers.parse(n, None)):
            return n


def personnummer(rng: random.Random) -> str:
    """A Swedish personnummer (birth date, 3 digits, Luhn digit) in one of its layouts:
    YYMMDD-XXXX, YYYYMMDD-XXXX, or the 12 or 10 digits alone."""
    year, mm, dd = rng.randint(1930, 2015), rng.randint(1, 12), rng.randint(1, 28)
    body = f"{year % 100:02d}{mm:02d}{dd:02d}{_digits(rng, 3)}"
    total = 0
    for i, c in enumerate(body):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    ten = body + str((10 - total % 10) % 10)
    return rng.choice(
        [f"{ten[:6]}-{ten[6:]}", f"{year // 100}{ten[:6]}-{ten[6:]}", f"{year // 100}{ten}", ten]
    )


def de_tax_id(rng: random.Random) -> str:
    """A Steuer-ID: 10 digits (first not 0, none more than three times), ISO 7064 mod 11,10."""
    while True:
        body = str(rng.randint(1, 9)) + _digits(rng, 9)
        if max(body.count(c) for c in body) <= 3:
            break
    product = 10
    for c in body:
        total = (int(c) + product) % 10 or 10
        product = total * 2 % 11
    return body + str((11 - product) % 10)


def _cross_sum(n: int) -> int:
    return n // 10 + n % 10


def de_social_security(rng: random.Random) -> str:
    """A Rentenversicherungsnummer: area, birth date, surname initial, serial, check digit."""
    letter = rng.choice(string.ascii_uppercase)
    head = f"{rng.randint(2, 89):02d}{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}"
    head += f"{rng.randint(0, 99):02d}"
    serial = _digits(rng, 2)
    digits = head + f"{ord(letter) - 64:02d}" + serial
    weights = (2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1)
    check = sum(_cross_sum(int(c) * w) for c, w in zip(digits, weights, strict=True)) % 10
    return f"{head}{letter}{serial}{check}"


_ICAO = "CFGHJKLMNPRTVWXYZ"


def de_document(rng: random.Random, old: bool = False) -> str:
    """A German identity card or passport number: 8 characters of the ICAO set and the ICAO
    7-3-1 check digit; ``old``: an identity card before 2010 (T and 8 digits)."""
    if old:
        return "T" + _digits(rng, 8)
    body = rng.choice(_ICAO) + "".join(rng.choice(_ICAO + "0123456789") for _ in range(7))
    vals = [int(c) if c.isdigit() else ord(c) - 55 for c in body]
    return body + str(sum(v * (7, 3, 1)[i % 3] for i, v in enumerate(vals)) % 10)


def de_health_insurance(rng: random.Random) -> str:
    """A KVNR: surname initial, 8 digits, the GKV check digit (factors 1, 2 over the
    letter's two digits and the first 8 digits, cross sums)."""
    letter = rng.choice(string.ascii_uppercase)
    body = _digits(rng, 8)
    digits = f"{ord(letter) - 64:02d}" + body
    check = sum(_cross_sum(int(c) * (1 + i % 2)) for i, c in enumerate(digits)) % 10
    return f"{letter}{body}{check}"


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))


def value(entity: str, rng: random.Random, loc: str = "us") -> str:
    """One generated value of ``entity`` (names and phones of locale ``loc``)."""
    if entity in ("EMAIL_ADDRESS", "US_SSN", "IBAN_CODE", "IP_ADDRESS"):
        return base.value(entity, rng)
    if entity == "PHONE_NUMBER":
        if loc in INTL_PHONES and rng.random() < 0.8:
            return intl_phone(rng, loc)
        return base.value(entity, rng)
    if entity == "CREDIT_CARD":
        return card(rng)
    if entity == "CRYPTO":
        return crypto(rng)
    if entity == "MAC_ADDRESS":
        sep = rng.choice([":", "-"])
        return sep.join(f"{rng.randint(0, 255):02X}" for _ in range(6))
    if entity == "MEDICAL_LICENSE":
        return dea(rng)
    if entity == "US_BANK_NUMBER":
        return _digits(rng, rng.randint(8, 12))  # 8 digits: known only by its context
    if entity == "US_DRIVER_LICENSE":
        # Many states issue digits only, 6 to 9 of them: known only by their context.
        if rng.random() < 0.5:
            return _digits(rng, rng.randint(6, 9))
        return rng.choice(string.ascii_uppercase) + _digits(rng, 7)
    if entity == "US_ITIN":
        return f"9{_digits(rng, 2)}-{rng.choice(['70', '78', '81', '90', '94'])}-{_digits(rng, 4)}"
    if entity == "US_PASSPORT":
        return rng.choice([_digits(rng, 9), rng.choice(string.ascii_uppercase) + _digits(rng, 8)])
    make = _GENERATED.get(entity)
    if make is not None:
        return make(rng)
    if entity == "PERSON":
        return f"{rng.choice(FIRST[loc])} {rng.choice(LAST[loc])}"
    if entity == "LOCATION":
        return rng.choice(CITIES[loc])
    if entity == "DATE_OF_BIRTH":
        return f"{rng.randint(1940, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    raise ValueError(entity)


# Ids made by one generator of their own (the rest are built in ``value``).
_GENERATED: dict[str, Callable[[random.Random], str]] = {
    "UK_NHS": nhs,
    "UK_NINO": nino,
    "ES_NIF": nif,
    "ES_NIE": nie,
    "IT_FISCAL_CODE": fiscal_code,
    "PL_PESEL": pesel,
    "FI_PERSONAL_IDENTITY_CODE": fi_code,
    "IT_DRIVER_LICENSE": it_driver_license,
    "IT_VAT_CODE": it_vat_code,
    "IT_PASSPORT": lambda rng: f"{_letters(rng, 2)}{_digits(rng, 7)}",
    "IT_IDENTITY_CARD": it_identity_card,
    "ES_PASSPORT": lambda rng: f"{_letters(rng, 3)}{_digits(rng, 6)}",
    "SE_PERSONNUMMER": personnummer,
    "DE_TAX_ID": de_tax_id,
    "DE_SOCIAL_SECURITY": de_social_security,
    "DE_ID_CARD": lambda rng: de_document(rng, old=rng.random() < 0.25),
    "DE_PASSPORT": de_document,
    "DE_HEALTH_INSURANCE": de_health_insurance,
    "DE_FUEHRERSCHEIN": lambda rng: (
        f"{_letters(rng, 2)}{_digits(rng, 8)}{rng.choice(string.ascii_uppercase + '0123456789')}"
    ),
}


# --- documents ------------------------------------------------------------------------------
SENTENCES = {
    "EMAIL_ADDRESS": ["Please contact {} for access.", "Forwarded the invoice to {} today."],
    "US_SSN": ["Customer SSN: {} on file.", "Her social security number is {}."],
    "CREDIT_CARD": ["Charged card {} for the order.", "Payment with credit card {} declined."],
    "IBAN_CODE": ["Refund to IBAN {} today.", "Wire the amount to account {} please."],
    "IP_ADDRESS": ["Login from {} was blocked.", "The request came from host {}."],
    "PHONE_NUMBER": ["Call her at {} tomorrow.", "Phone: {} (mobile)."],
    "UK_NHS": ["NHS number {} was verified.", "Patient NHS no. {} registered."],
    "CRYPTO": ["Send the BTC to wallet {} now.", "Bitcoin address {} received funds."],
    "MAC_ADDRESS": ["Device MAC address {} joined.", "Blocked hardware address {} on port 3."],
    "MEDICAL_LICENSE": ["Prescriber DEA number {} verified.", "Medical license {} expired."],
    "US_BANK_NUMBER": ["Deposit into bank account {} today.", "Checking account {} closed."],
    "US_DRIVER_LICENSE": ["Driver license {} expires soon.", "Verified driver's license {}."],
    "US_ITIN": ["Taxpayer ITIN {} on the form.", "The ITIN {} was issued."],
    "US_PASSPORT": ["US passport number {} scanned.", "Passport {} was renewed."],
    "UK_NINO": ["National insurance number {} updated.", "Her NINO is {}."],
    "ES_NIF": ["DNI {} del cliente.", "NIF {} registered."],
    "ES_NIE": ["NIE {} del titular.", "Foreign resident NIE {} on file."],
    "IT_FISCAL_CODE": ["Codice fiscale {} verificato.", "Fiscal code {} on the contract."],
    "PL_PESEL": ["PESEL {} zweryfikowany.", "Customer PESEL {} stored."],
    "FI_PERSONAL_IDENTITY_CODE": ["Henkilötunnus {} tallennettu.", "HETU {} verified."],
    "IT_DRIVER_LICENSE": ["Patente di guida {} rinnovata.", "Italian driving licence {} on file."],
    "IT_VAT_CODE": ["Partita IVA {} della società.", "VAT number {} on the invoice."],
    "IT_PASSPORT": ["Passaporto {} rilasciato a Roma.", "Italian passport {} scanned."],
    "IT_IDENTITY_CARD": ["Carta d'identità {} valida.", "Identity card {} checked at the desk."],
    "ES_PASSPORT": ["Número de pasaporte {} del titular.", "Spanish passport {} scanned."],
    "SE_PERSONNUMMER": ["Personnummer {} registrerat.", "Her personal identity number is {}."],
    "DE_TAX_ID": ["Steuer-ID {} beim Finanzamt hinterlegt.", "Her German tax ID is {}.",
                  "Die steuerliche Identifikationsnummer lautet {}."],
    "DE_SOCIAL_SECURITY": ["Rentenversicherungsnummer {} gespeichert.",
                           "Sozialversicherungsnummer: {} (Arbeitgeber).",
                           "German social security number {} on file."],
    "DE_ID_CARD": ["Personalausweis Nr. {} geprüft.", "German ID card {} checked at the desk."],
    "DE_PASSPORT": ["Reisepassnummer {} erfasst.", "German passport {} scanned at the gate."],
    "DE_HEALTH_INSURANCE": ["Krankenversichertennummer {} der AOK.",
                            "German health insurance number {} verified."],
    "DE_FUEHRERSCHEIN": ["Führerscheinnummer {} ausgestellt in München.",
                         "German driving licence {} on file."],
    "PERSON": ["Yesterday {} signed the contract.", "I met {} at the branch office.",
               "The account belongs to {}, who moved last year.", "Ask {} about the refund."],
}  # fmt: skip
LOG_KEYS = {
    "EMAIL_ADDRESS": "user", "US_SSN": "ssn", "CREDIT_CARD": "card", "IBAN_CODE": "iban",
    "IP_ADDRESS": "remote_addr", "PHONE_NUMBER": "phone", "UK_NHS": "nhs_number",
    "CRYPTO": "btc_wallet", "MAC_ADDRESS": "mac", "MEDICAL_LICENSE": "dea_number",
    "US_BANK_NUMBER": "bank_account", "US_DRIVER_LICENSE": "driver_license", "US_ITIN": "itin",
    "US_PASSPORT": "passport", "UK_NINO": "nino", "ES_NIF": "nif", "ES_NIE": "nie",
    "IT_FISCAL_CODE": "codice_fiscale", "PL_PESEL": "pesel",
    "FI_PERSONAL_IDENTITY_CODE": "hetu", "IT_DRIVER_LICENSE": "patente",
    "IT_VAT_CODE": "partita_iva", "IT_PASSPORT": "passaporto",
    "IT_IDENTITY_CARD": "carta_identita", "ES_PASSPORT": "pasaporte",
    "SE_PERSONNUMMER": "personnummer", "DE_TAX_ID": "steuer_id", "DE_SOCIAL_SECURITY": "rvnr",
    "DE_ID_CARD": "personalausweis", "DE_PASSPORT": "reisepass", "DE_HEALTH_INSURANCE": "kvnr",
    "DE_FUEHRERSCHEIN": "fuehrerschein",
}  # fmt: skip
HEADERS = {
    **{k: v for k, v in LOG_KEYS.items() if k != "EMAIL_ADDRESS"},
    "EMAIL_ADDRESS": "email", "PERSON": "full_name", "LOCATION": "city",
    "DATE_OF_BIRTH": "date_of_birth",
}  # fmt: skip


def positives(seed: int = 7, n: int = 40) -> list[Doc]:
    """Per entity ``n`` sentences and ``n`` log lines; tables of every layout and locale."""
    rng = random.Random(seed)
    docs: list[Doc] = []
    for ent in ENTITIES:
        for i in range(n):
            loc = LOCALES[i % len(LOCALES)]
            if ent in SENTENCES:
                v = value(ent, rng, loc)
                text = rng.choice(SENTENCES[ent]).format(v)
                s = text.index(v)
                docs.append(Doc("sentence", text, [(ent, s, s + len(v))]))
            if ent in LOG_KEYS:
                docs.append(log_doc(rng, LOG_KEYS[ent], ent, value(ent, rng, loc)))
    table_ents = [e for e in ENTITIES if e in HEADERS]
    for t in range(n):
        loc = LOCALES[t % len(LOCALES)]
        for kind in ("dataframe", "html"):
            for telling in (True, False):
                pool = table_ents if telling else [e for e in table_ents if e in SELF_EVIDENT]
                ents = rng.sample(pool, min(4, len(pool)))
                header = ["id", "amount"] + [
                    HEADERS[e] if telling else f"col_{i}" for i, e in enumerate(ents)
                ]
                rows = [
                    [str(rng.randint(1, 99999)), f"{rng.random() * 1000:.2f}"]
                    + [value(e, rng, loc) for e in ents]
                    for _ in range(8)
                ]
                docs.append(table(kind, header, rows, [None, None, *ents]))
    return docs


def customers(rows: int = 1000, seed: int = 3) -> list[list[str]]:
    """A customers table like the demo's (header first): names, birth dates, cities, contacts."""
    rng = random.Random(seed)
    out = [["customer_id", "first_name", "last_name", "date_of_birth", "city", "email", "phone",
            "ssn", "balance"]]  # fmt: skip
    for i in range(rows):
        loc = LOCALES[i % len(LOCALES)]
        out.append(
            [
                str(10_000 + i), rng.choice(FIRST[loc]), rng.choice(LAST[loc]),
                value("DATE_OF_BIRTH", rng), rng.choice(CITIES[loc]),
                value("EMAIL_ADDRESS", rng), value("PHONE_NUMBER", rng),
                value("US_SSN", rng), f"{rng.uniform(0, 1e5):.2f}",
            ]
        )  # fmt: skip
    return out


def customers_doc(kind: str, rows: int = 1000) -> Doc:
    """The customers table as a DataFrame text repr or HTML table, labelled."""
    data = customers(rows)
    ents: list[str | None] = [None, "PERSON", "PERSON", "DATE_OF_BIRTH", "LOCATION",
                              "EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", None]  # fmt: skip
    return table(kind, data[0], data[1:], ents)


def negatives(seed: int = 11, size: int = 300_000) -> list[Doc]:
    """About ``size`` characters of PII-free technical output."""
    rng = random.Random(seed)
    makers = [
        _pip_list, _training_log, _config, _prose_about_code, _metrics_table, _k8s, _jobs_log,
    ]  # fmt: skip
    return fill(rng, makers, size, base.negatives(seed, size // 2))


def _pip_list(rng: random.Random) -> str:
    pkgs = ["numpy", "pandas", "scikit-learn", "torch", "Jinja2", "MarkupSafe", "Pillow",
            "SQLAlchemy", "PyYAML", "Werkzeug", "Flask", "Django", "requests", "urllib3"]  # fmt: skip
    lines = ["Package            Version", "------------------ ---------"]
    for p in rng.sample(pkgs, 8):
        lines.append(f"{p:<18} {rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}")
    return "\n".join(lines) + "\n"


def _training_log(rng: random.Random) -> str:
    out = []
    for epoch in range(1, 6):
        out.append(
            f"Epoch {epoch}/5 - loss: {rng.random():.4f} - val_loss: {rng.random():.4f} - "
            f"Accuracy: {rng.random():.4f} - Learning Rate: {rng.random() / 100:.6f} - "
            f"{rng.randint(100, 999)}s {rng.randint(10, 99)}ms/step"
        )
    return "\n".join(out) + "\n"


def _config(rng: random.Random) -> str:
    return (
        f'{{"Version": "{rng.randint(1, 9)}.{rng.randint(0, 9)}", "Region": "eu-west-1", '
        f'"MaxRetries": {rng.randint(1, 9)}, "TimeoutSeconds": {rng.randint(10, 999)}, '
        f'"Owner": "Data Platform", "Service Name": "Billing Export", "BatchSize": '
        f'{rng.randint(100, 99999)}, "Checksum": "{hashlib.md5(str(rng.random()).encode()).hexdigest()}"}}\n'  # noqa: S324
    )


def _prose_about_code(rng: random.Random) -> str:
    return rng.choice(
        [
            "Returns the Mean Absolute Error of the Linear Regression model on the Test Set.\n",
            "See the Pandas User Guide, section Group By: split-apply-combine, for details.\n",
            "The Random Forest Classifier uses Gini Impurity; Gradient Boosting uses Log Loss.\n",
            "Open the Command Palette, choose Kernel: Restart Kernel and Run All Cells.\n",
            "Apache Spark reads Parquet files from Amazon S3 through the Hadoop AWS connector.\n",
            "Data Science Team meeting notes: Sprint Review moved to Thursday at the Main Hall.\n",
        ]
    )


def _metrics_table(rng: random.Random) -> str:
    header = "    Model Name             Precision    Recall  F1 Score  Support"
    rows = [header]
    for i, m in enumerate(["Logistic Regression", "Random Forest", "Gradient Boosting", "SVM"]):
        rows.append(
            f"{i}   {m:<20} {rng.random():>10.4f} {rng.random():>9.4f} {rng.random():>9.4f}"
            f" {rng.randint(100, 99999):>8d}"
        )
    return "\n".join(rows) + "\n"


def _k8s(rng: random.Random) -> str:
    return (
        f"Name:         worker-{rng.randint(1000, 9999)}-{rng.choice(['abcde', 'xkq9z'])}\n"
        f"Namespace:    default\nNode:         ip-10-0-{rng.randint(1, 254)}-"
        f"{rng.randint(1, 254)}.ec2.internal\nStart Time:   Mon, 21 Nov 2026 06:{rng.randint(10, 59)}:00\n"
        f"Status:       Running\nRestart Count: {rng.randint(0, 9)}\n"
        f"Container ID: containerd://{hashlib.sha256(str(rng.random()).encode()).hexdigest()}\n"
    )


def _jobs_log(rng: random.Random) -> str:
    """A service's log where the key words of short ids stand beside numbers that are none:
    ids of a driver or an account, sizes, durations, versions, licences of software."""
    n = rng.randint
    return (
        f"INFO dispatch: trip {n(10**6, 10**8)} driver_id={n(10**5, 10**7)} "
        f"eta={n(100, 9999)}s\n"
        f"INFO billing: account_id={n(10**7, 10**8 - 1)} invoices={n(1, 99)} "
        f"bytes={n(10**6, 10**8)}\n"
        f"INFO spark: driver memory {n(1024, 65536)} MB, driver took {n(10**5, 10**7)} ms; "
        f"bank of {n(2, 64)} workers\n"
        f"WARN license check: {n(1, 9)} of {n(10, 99)} seats; License: BSD-3-Clause, "
        f"build {n(10**6, 10**8)}\n"
        f"DEBUG accounts: {n(10**6, 10**8)} rows scanned in {n(100, 99999)} ms, "
        f"{n(1, 999)} accounts locked\n"
    )
