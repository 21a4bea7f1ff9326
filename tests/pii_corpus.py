"""A seeded, labeled PII evaluation set and a negative set, for tests and benchmarks.

Positives: sentences, DataFrame text reprs, DataFrame HTML reprs and log lines, each carrying
generated values of EMAIL_ADDRESS, US_SSN, CREDIT_CARD, IBAN_CODE, IP_ADDRESS and PHONE_NUMBER
(valid ones: real checksums, assignable area codes). Negatives: numeric tables, numpy-style
arrays, tracebacks, code, URLs, hashes and UUIDs, which must produce (almost) no findings.
Its document builders (``Doc``, ``table``, ``log_doc``, ``fill``) serve ``pii_labelled`` too.
"""

from __future__ import annotations

import hashlib
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

ENTITIES = ("EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER")
FIRST = ["ann", "bob", "carla", "dmitri", "eve", "farah", "gus", "hana", "ivan", "jo", "kwame"]
LAST = ["smith", "okafor", "nguyen", "garcia", "muller", "rossi", "tanaka", "kowalski", "dubois"]
DOMAINS = ["example.com", "acme-corp.io", "mail.example.org", "bank.co.uk", "uni-bonn.de"]
AREA = ["212", "415", "617", "312", "206", "303", "512", "646", "718", "202"]
IBAN_SPEC = {"DE": (8, 10, "n"), "FR": (10, 11, "fr"), "GB": (4, 14, "gb"), "NL": (4, 10, "nl")}


@dataclass
class Doc:
    kind: str
    text: str
    labels: list[tuple[str, int, int]] = field(default_factory=list)


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    cc = rng.choice(list(IBAN_SPEC))
    if cc == "DE":
        bban = "".join(rng.choice(string.digits) for _ in range(18))
    elif cc == "FR":
        bban = "".join(rng.choice(string.digits) for _ in range(23))
    elif cc == "GB":
        bban = "".join(rng.choice("ABCDEFGHJKLMNPRSTUWXYZ") for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(14))
    else:
        bban = "".join(rng.choice("ABCDEFGHJKLMNPRSTUWXYZ") for _ in range(4))
        bban += "".join(rng.choice(string.digits) for _ in range(10))
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    check = 98 - int(num) % 97
    iban = f"{cc}{check:02d}{bban}"
    if rng.random() < 0.5:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def value(entity: str, rng: random.Random) -> str:
    """One generated value of ``entity`` in one of its usual formats."""
    if entity == "EMAIL_ADDRESS":
        sep = rng.choice([".", "_", "", "-"])
        return (
            f"{rng.choice(FIRST)}{sep}{rng.choice(LAST)}{rng.randint(0, 99)}@{rng.choice(DOMAINS)}"
        )
    if entity == "US_SSN":
        area = rng.choice([a for a in range(1, 900) if a != 666])
        sep = rng.choice(["-", "-", "-", " "])
        return f"{area:03d}{sep}{rng.randint(1, 99):02d}{sep}{rng.randint(1, 9999):04d}"
    if entity == "CREDIT_CARD":
        kind = rng.choice(["visa", "mc", "amex"])
        if kind == "amex":
            n = _luhn_complete(rng.choice(["34", "37"]), 15, rng)
            return rng.choice([f"{n[:4]} {n[4:10]} {n[10:]}", f"{n[:4]}-{n[4:10]}-{n[10:]}"])
        n = _luhn_complete("4" if kind == "visa" else f"5{rng.randint(1, 5)}", 16, rng)
        sep = rng.choice([" ", "-", ""])
        return sep.join(n[i : i + 4] for i in range(0, 16, 4))
    if entity == "IBAN_CODE":
        return _iban(rng)
    if entity == "IP_ADDRESS":
        if rng.random() < 0.2:
            return "2001:db8:" + ":".join(f"{rng.randint(0, 65535):x}" for _ in range(6))
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    if entity == "PHONE_NUMBER":
        a, e, s = rng.choice(AREA), rng.randint(200, 999), rng.randint(0, 9999)
        return rng.choice(
            [f"({a}) {e}-{s:04d}", f"{a}-{e}-{s:04d}", f"+1 {a} {e} {s:04d}", f"{a}.{e}.{s:04d}"]
        )
    raise ValueError(entity)


def _sentence(rng: random.Random, ent: str, v: str) -> str:
    templates = {
        "EMAIL_ADDRESS": ["Please contact {} for access.", "Sent the report to {} yesterday."],
        "US_SSN": ["Customer SSN: {} on file.", "The social security number is {}."],
        "CREDIT_CARD": ["Charged card {} for the order.", "Payment with {} was declined."],
        "IBAN_CODE": ["Refund to IBAN {} today.", "Wire the amount to {} please."],
        "IP_ADDRESS": ["Login from {} was blocked.", "The request came from host {}."],
        "PHONE_NUMBER": ["Call her at {} tomorrow.", "Phone: {} (mobile)."],
    }
    return rng.choice(templates[ent]).format(v)


def positives(seed: int = 7, n: int = 200) -> list[Doc]:
    """``n`` documents of each kind (sentence, dataframe text, dataframe html, log)."""
    rng = random.Random(seed)
    docs: list[Doc] = []
    for _ in range(n):
        ent = rng.choice(ENTITIES)
        v = value(ent, rng)
        text = _sentence(rng, ent, v)
        i = text.index(v)
        docs.append(Doc("sentence", text, [(ent, i, i + len(v))]))
    cols = {
        "EMAIL_ADDRESS": "email",
        "US_SSN": "ssn",
        "CREDIT_CARD": "card_number",
        "IBAN_CODE": "iban",
        "IP_ADDRESS": "client_ip",
        "PHONE_NUMBER": "phone",
    }
    for kind in ("dataframe", "html"):
        for _ in range(n // 10):
            ents = rng.sample(ENTITIES, 3)
            rows = [
                [f"{rng.randint(1, 9999)}", f"{rng.random() * 1000:.2f}"]
                + [value(e, rng) for e in ents]
                for _ in range(10)
            ]
            header = ["id", "amount"] + [cols[e] for e in ents]
            # A row-number column 4 wide with its separator, as this corpus was first written.
            docs.append(table(kind, header, rows, [None, None, *ents], index_width=2))
    key = {"IP_ADDRESS": "remote_addr", "CREDIT_CARD": "card", "PHONE_NUMBER": "phone"}
    for _ in range(n):
        ent = rng.choice(ENTITIES)
        docs.append(log_doc(rng, key.get(ent, "user"), ent, value(ent, rng)))
    return docs


def table(
    kind: str,
    header: list[str],
    rows: list[list[str]],
    ents: list[str | None],
    index_width: int | None = None,
) -> Doc:
    """``rows`` under ``header`` as pandas shows a DataFrame (``kind`` "dataframe": its text
    repr; otherwise its HTML table), each cell of a column whose ``ents`` entry is an entity
    labelled with it. ``index_width``: the width of the row-number column of the text repr (by
    default that of the last row's number, as pandas pads it)."""
    labels: list[tuple[str, int, int]] = []
    if kind == "dataframe":
        widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
        idx = len(str(len(rows) - 1)) if index_width is None else index_width
        lines = [
            " " * idx + "  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
        ]
        pos = len(lines[0]) + 1
        for i, r in enumerate(rows):
            line = f"{i}".ljust(idx)
            for c, (cell, w) in enumerate(zip(r, widths, strict=True)):
                line += "  "
                start = pos + len(line) + (w - len(cell))
                line += cell.rjust(w)
                ent = ents[c]
                if ent:
                    labels.append((ent, start, start + len(cell)))
            lines.append(line)
            pos += len(line) + 1
        return Doc("dataframe", "\n".join(lines) + "\n", labels)
    out = '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">'
    out += "\n      <th></th>" + "".join(f"\n      <th>{h}</th>" for h in header)
    out += "\n    </tr>\n  </thead>\n  <tbody>"
    for i, r in enumerate(rows):
        out += f"\n    <tr>\n      <th>{i}</th>"
        for c, cell in enumerate(r):
            out += "\n      <td>"
            ent = ents[c]
            if ent:
                labels.append((ent, len(out), len(out) + len(cell)))
            out += f"{cell}</td>"
        out += "\n    </tr>"
    return Doc("html", out + "\n  </tbody>\n</table>", labels)


def log_doc(rng: random.Random, key: str, ent: str, v: str) -> Doc:
    """An application log line (``key=v``, a date, a level) with ``v`` labelled ``ent``."""
    pre = f"2026-11-{rng.randint(1, 28):02d} 0{rng.randint(0, 9)}:{rng.randint(10, 59)}:11,"
    pre += f"{rng.randint(100, 999)} INFO app.request "
    text = f"{pre}{key}={v} status=200 took={rng.randint(1, 900)}ms"
    i = text.index(v)
    return Doc("log", text, [(ent, i, i + len(v))])


def negatives(seed: int = 11, size: int = 200_000) -> list[Doc]:
    """About ``size`` characters of PII-free text that naive detectors flag."""
    rng = random.Random(seed)
    makers = [_numeric_table, _numpy_array, _traceback, _code, _urls, _hashes, _uuids]
    return fill(rng, makers, size)


def fill(
    rng: random.Random,
    makers: list[Callable[[random.Random], str]],
    size: int,
    docs: list[Doc] | None = None,
) -> list[Doc]:
    """``docs``, then negatives of ``makers`` (each picked with ``rng``) until the documents
    hold at least ``size`` characters."""
    docs = list(docs or [])
    total = sum(len(d.text) for d in docs)
    while total < size:
        text = rng.choice(makers)(rng)
        docs.append(Doc("negative", text))
        total += len(text)
    return docs


def _numeric_table(rng: random.Random) -> str:
    lines = ["          user_id       amount   count        ratio   ts"]
    for i in range(30):
        uid = rng.randint(10**9, 10**16)
        lines.append(
            f"{i:<4} {uid:>14d} {rng.uniform(-1e6, 1e6):>12.2f} {rng.randint(0, 99999):>7d} "
            f"{rng.random():>12.6f} {rng.randint(1_600_000_000, 1_800_000_000)}"
        )
    return "\n".join(lines) + "\n"


def _numpy_array(rng: random.Random) -> str:
    rows = [
        "[" + " ".join(f"{rng.uniform(-10, 10):.8f}" for _ in range(6)) + "]" for _ in range(20)
    ]
    ints = "array([" + ", ".join(str(rng.randint(0, 10**10)) for _ in range(30)) + "])"
    return "array([" + ",\n       ".join(rows) + "])\n" + ints + "\n"


def _traceback(rng: random.Random) -> str:
    n = rng.randint(10, 3000)
    return (
        "Traceback (most recent call last):\n"
        f'  File "/opt/conda/lib/python3.11/site-packages/pandas/core/frame.py", line {n}, in '
        "__getitem__\n    indexer = self.columns.get_loc(key)\n"
        f'  File "/tmp/ipykernel_{rng.randint(1000, 99999)}/{rng.randint(10**8, 10**9)}.py", '
        f"line {rng.randint(1, 50)}, in <module>\nKeyError: 'col_{rng.randint(0, 99)}'\n"
    )


def _code(rng: random.Random) -> str:
    return (
        f"def f(x, y={rng.randint(0, 100)}):\n    return x * {rng.random():.6f} + y  # "
        f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}\n"
        f"df = df[df.amount > {rng.randint(1000, 999999)}].head({rng.randint(5, 50)})\n"
        f"@decorator\nclass Model{rng.randint(0, 99)}:\n    seed = {rng.randint(0, 2**31)}\n"
    )


def _urls(rng: random.Random) -> str:
    return "\n".join(
        f"https://{rng.choice(['data', 'api', 'www'])}.example.com/v{rng.randint(1, 3)}/items/"
        f"{rng.randint(1, 10**9)}?page={rng.randint(1, 99)}&ts={rng.randint(10**9, 2 * 10**9)}"
        for _ in range(10)
    )


def _hashes(rng: random.Random) -> str:
    return "\n".join(
        f"{hashlib.sha256(str(rng.random()).encode()).hexdigest()}  "
        f"{hashlib.md5(str(rng.random()).encode()).hexdigest()}  "  # noqa: S324
        f"commit {hashlib.sha1(str(rng.random()).encode()).hexdigest()[:12]}"  # noqa: S324
        for _ in range(10)
    )


def _uuids(rng: random.Random) -> str:
    return "\n".join(str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(20))


def recall(docs: list[Doc], found: list[list[tuple[str, int, int]]]) -> dict[str, float]:
    """Per entity: labeled spans overlapped by a finding of the same type / all labeled spans."""
    hit: dict[str, int] = dict.fromkeys(ENTITIES, 0)
    total: dict[str, int] = dict.fromkeys(ENTITIES, 0)
    for doc, fs in zip(docs, found, strict=True):
        for ent, s, e in doc.labels:
            total[ent] += 1
            if any(t == ent and fs_ < e and fe > s for t, fs_, fe in fs):
                hit[ent] += 1
    return {k: hit[k] / total[k] for k in ENTITIES if total[k]}
