"""The live guard's one-pass byte-set test agrees with one membership test per byte."""

from __future__ import annotations

import random

import pytest

from jupyter_prod_discovery.guard.bytescan import ByteSet


def _reference(members: set[int], data: bytes) -> bool:
    return not any(bytes([v]) in data for v in members)


def test_byteset_agrees_with_membership_tests_on_random_buffers() -> None:
    rng = random.Random(19)
    for _ in range(2000):
        members = set(rng.sample(range(256), rng.randint(0, 200)))
        if rng.random() < 0.5:
            members |= set(range(0x80, 0x100))
        alphabet = bytes(rng.sample(range(256), rng.randint(1, 40)))
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        assert ByteSet(members).absent_from(data) is _reference(members, data), (members, data)


def test_byteset_finds_a_member_anywhere_in_a_large_buffer() -> None:
    gate = ByteSet(b"0123456789@ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    data = (b"x" * 99 + b"\\n") * 1000
    assert gate.absent_from(data)
    for pos in (0, 15, 16, 63, 64, 4095, 50_000, len(data) - 1):
        for member in (b"7", b"Q", b"@"):
            assert not gate.absent_from(data[:pos] + member + data[pos + 1 :])


def test_byteset_tests_a_nul_and_non_ascii_bytes_like_any_other() -> None:
    gate = ByteSet([ord("@"), *range(0x80, 0x100)])
    assert gate.absent_from(b'{"text": "plain words"}')
    assert gate.absent_from(b'{"text": "a\x00b"}')  # a NUL is no member: the C-string era is over
    assert not gate.absent_from("{'text': 'Zieli\u0144ski'}".encode())
    assert not gate.absent_from("\uff11".encode())  # a fullwidth digit
    assert not ByteSet([0]).absent_from(b"a\x00b")
    assert ByteSet([ord("@")]).absent_from("caf\u00e9".encode())
    assert ByteSet([]).absent_from(b"anything at all 123")


def test_byteset_refuses_values_that_are_not_bytes() -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ByteSet([300])
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ByteSet([-1])
