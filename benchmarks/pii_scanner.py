"""PII scanner vs Presidio (no_op NLP engine), same inputs, same run: quality and speed.

Run: ``python -m benchmarks.pii_scanner [--json] [--numeric]``. Prints per-entity recall of ours
and of Presidio on the labeled set of ``tests/pii_corpus.py``, false positives per 100 KB of the
negative set, and characters per second on a 1,000-row DataFrame repr and a 1 MB log (best of 3;
our cache is cleared before every run so it measures scanning, not the cache).

The numeric cases (``--numeric`` runs only them, ours alone) are about 1 MB each of numbers with
no PII around them, the output a notebook prints most: counter lines, a training log of
measurements and 10-16 digit ids, and a DataFrame repr of id, epoch and measurement columns. They
report MB/s of process CPU time, best of 3, and the findings (bare Luhn-valid ids with a card's
issuer prefix are cards, as for Presidio).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from benchmarks.stats import best_cpu
from jupyter_prod_discovery.pii import PIIPolicy, patterns
from tests import pii_corpus as C

THRESHOLD = 0.5


def presidio_engine() -> Any:
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    return AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])


def _table_repr(header: list[str], data: list[list[str]], index: int) -> str:
    """The rows as pandas prints a DataFrame: right-aligned columns, an index ``index`` wide."""
    w = [max(len(h), *(len(r[i]) for r in data)) for i, h in enumerate(header)]
    lines = [" " * index + "  ".join(h.rjust(x) for h, x in zip(header, w, strict=True))]
    lines += [
        f"{i:<{index}}" + "  ".join(c.rjust(x) for c, x in zip(r, w, strict=True))
        for i, r in enumerate(data)
    ]
    return "\n".join(lines) + "\n"


def dataframe_repr(rows: int = 1000, seed: int = 3) -> str:
    """A pandas-like text repr of a customer table with PII columns (pandas not required)."""
    rng = random.Random(seed)
    header = ["customer_id", "email", "phone", "ssn", "balance", "score", "last_ip"]
    data = [
        [
            str(rng.randint(10**6, 10**7)),
            C.value("EMAIL_ADDRESS", rng),
            C.value("PHONE_NUMBER", rng),
            C.value("US_SSN", rng),
            f"{rng.uniform(0, 1e5):.2f}",
            f"{rng.random():.6f}",
            C.value("IP_ADDRESS", rng),
        ]
        for _ in range(rows)
    ]
    return _table_repr(header, data, 5)


def log_text(size: int = 1_000_000, seed: int = 5) -> str:
    """An application log with a PII value on about one line in ten."""
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    while n < size:
        line = (
            f"2026-11-21 06:{rng.randint(10, 59)}:{rng.randint(10, 59)},{rng.randint(100, 999)} "
            f"INFO worker-{rng.randint(1, 8)} processed batch {rng.randint(1, 10**6)} "
            f"in {rng.random() * 100:.3f} ms rows={rng.randint(0, 5000)}"
        )
        if rng.random() < 0.1:
            ent = rng.choice(C.ENTITIES)
            line += f" field={C.value(ent, rng)}"
        out.append(line)
        n += len(line) + 1
    return "\n".join(out) + "\n"


def counter_lines(rows: int = 20_000) -> str:
    """Counter lines, one 10-digit zero-padded number each (~1 MB for 20,000 rows)."""
    return "".join(f"row {i:010d} some harmless sample output text\n" for i in range(rows))


def measurement_log(size: int = 1_000_000, seed: int = 7) -> str:
    """A training log: step counters, losses, nanosecond timings and 10-16 digit sample ids."""
    rng = random.Random(seed)
    out: list[str] = []
    n = 0
    step = 0
    while n < size:
        step += 1
        line = (
            f"step {step:>7} loss {rng.random():.6f} lr {rng.random() * 1e-3:.3e} "
            f"elapsed_ns {rng.randint(10**9, 10**12)} sample {rng.randint(10**9, 10**16)} "
            f"tokens {rng.randint(10**6, 10**9)}"
        )
        out.append(line)
        n += len(line) + 1
    return "\n".join(out) + "\n"


def numeric_dataframe(rows: int = 10_000, seed: int = 9) -> str:
    """A pandas-like repr of numeric columns: ids, epoch milliseconds, measurements."""
    rng = random.Random(seed)
    header = ["user_id", "event_id", "ts_ms", "value", "count", "latency_us"]
    data = [
        [
            str(rng.randint(10**9, 10**10 - 1)),
            str(rng.randint(10**15, 10**16 - 1)),
            str(1_733_000_000_000 + rng.randint(0, 10**9)),
            f"{rng.gauss(0, 1e4):.4f}",
            str(rng.randint(0, 10**6)),
            str(rng.randint(10**6, 10**9)),
        ]
        for _ in range(rows)
    ]
    return _table_repr(header, data, 6)


NUMERIC_CASES = {
    "counters_1MB": counter_lines,
    "measurement_log_1MB": measurement_log,
    "numeric_dataframe_10000_rows": numeric_dataframe,
}


def numeric_speed(reps: int = 3) -> dict[str, Any]:
    """Our MB/s on numbers with no PII around them (caches cleared before every run)."""
    scanner = PIIPolicy().scanner()
    out: dict[str, Any] = {}
    for name, make in NUMERIC_CASES.items():
        text = make()

        def once(text: str = text) -> None:
            scanner._cache.clear()
            patterns._NANP_MEMO.clear()
            scanner.scan(text)

        t = best_cpu(once, reps)
        out[name] = {
            "chars": len(text),
            "ours_cpu_s": round(t, 4),
            "ours_MB_per_s": round(len(text) / t / 1e6, 2),
            "findings": len(scanner.scan(text)),
        }
    return out


def _print_numeric(res: dict[str, Any]) -> None:
    for name, s in res.items():
        print(
            f"{name}: ours {s['ours_MB_per_s']:.2f} MB/s ({s['ours_cpu_s']} s CPU for "
            f"{s['chars'] / 1e6:.2f} MB, {s['findings']} findings)"
        )


def run() -> dict[str, Any]:
    policy = PIIPolicy()
    scanner = policy.scanner()
    engine = presidio_engine()
    ents = list(C.ENTITIES)

    pos, neg = C.positives(), C.negatives()
    ours = [
        [(f.entity_type, f.start, f.end) for f in policy.decide(scanner.scan(d.text)).findings]
        for d in pos
    ]
    pres_raw = [engine.analyze(d.text, language="en", entities=ents) for d in pos]
    pres = [
        [(r.entity_type, r.start, r.end) for r in rs if r.score >= THRESHOLD] for rs in pres_raw
    ]
    pres_any = [[(r.entity_type, r.start, r.end) for r in rs] for rs in pres_raw]
    neg_chars = sum(len(d.text) for d in neg)
    fp_ours = sum(len(policy.decide(scanner.scan(d.text)).findings) for d in neg)
    fp_pres = sum(
        sum(1 for r in engine.analyze(d.text, language="en", entities=ents) if r.score >= THRESHOLD)
        for d in neg
    )

    speed: dict[str, Any] = {}
    for name, text in (("dataframe_1000_rows", dataframe_repr()), ("log_1MB", log_text())):

        def ours_once(text: str = text) -> None:
            scanner._cache.clear()  # measure scanning, not the caches
            patterns._NANP_MEMO.clear()
            scanner.scan(text)

        t_ours = best_cpu(ours_once, 3, time.perf_counter)
        t_pres = best_cpu(
            lambda text=text: engine.analyze(text, language="en", entities=ents),
            1,
            time.perf_counter,
        )
        speed[name] = {
            "chars": len(text),
            "ours_chars_per_s": len(text) / t_ours,
            "presidio_chars_per_s": len(text) / t_pres,
            "speedup": t_pres / t_ours,
        }
    return {
        "threshold": THRESHOLD,
        "recall": {
            "ours": C.recall(pos, ours),
            "presidio": C.recall(pos, pres),
            "presidio_any_score": C.recall(pos, pres_any),
        },
        "false_positives_per_100KB": {
            "negative_chars": neg_chars,
            "ours": fp_ours / neg_chars * 100_000,
            "presidio": fp_pres / neg_chars * 100_000,
        },
        "speed": speed,
        "numeric_speed": numeric_speed(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true", help="print the raw JSON result")
    ap.add_argument("--numeric", action="store_true", help="only the numeric cases, ours only")
    args = ap.parse_args()
    if args.numeric:
        num = numeric_speed()
        if args.json:
            print(json.dumps(num, indent=2))
        else:
            _print_numeric(num)
        return
    res = run()
    if args.json:
        print(json.dumps(res, indent=2))
        return
    r = res["recall"]
    print(f"{'entity':<15} {'ours':>6} {'presidio@0.5':>13} {'presidio@any':>13}")
    for ent in C.ENTITIES:
        print(
            f"{ent:<15} {r['ours'][ent]:>6.3f} {r['presidio'][ent]:>13.3f} {r['presidio_any_score'][ent]:>13.3f}"
        )
    fp = res["false_positives_per_100KB"]
    print(
        f"false positives / 100 KB negatives: ours {fp['ours']:.2f}, presidio {fp['presidio']:.2f}"
    )
    for name, s in res["speed"].items():
        print(
            f"{name}: ours {s['ours_chars_per_s'] / 1e6:.2f} M chars/s, presidio "
            f"{s['presidio_chars_per_s'] / 1e3:.0f} k chars/s, speedup {s['speedup']:.0f}x"
        )
    _print_numeric(res["numeric_speed"])


if __name__ == "__main__":
    main()
