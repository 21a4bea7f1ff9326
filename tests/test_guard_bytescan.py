"""The live guard's one-pass byte-set test: the C library path and the fallback agree."""

from __future__ import annotations

import random
import sys

import pytest

from jupyter_prod_discovery.guard import bytescan
from jupyter_prod_discovery.guard.bytescan import ByteSet


def _reference(members: set[int], data: bytes) -> bool:
    return not any(bytes([v]) in data for v in members | {0})


def test_byteset_agrees_with_membership_tests_on_random_buffers() -> None:
    rng = random.Random(19)
    for _ in range(400):
        members = set(rng.sample(range(256), rng.randint(1, 60)))
        if rng.random() < 0.5:
            members |= set(range(0x80, 0x100))
        alphabet = bytes(rng.sample(range(256), rng.randint(1, 40)))
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        expected = _reference(members, data)
        assert ByteSet(members).absent_from(data) is expected, (members, data)
        assert ByteSet(members, use_libc=False).absent_from(data) is expected, (members, data)


@pytest.mark.parametrize("use_libc", [True, False])
def test_byteset_finds_a_member_anywhere_in_a_large_buffer(use_libc: bool) -> None:
    gate = ByteSet(b"0123456789@ABCDEFGHIJKLMNOPQRSTUVWXYZ", use_libc=use_libc)
    chunk = b"x" * 99 + b"\\n"
    data = chunk * 1000
    assert gate.absent_from(data)
    for pos in (0, 4095, 50_000, len(data) - 1):
        for member in (b"7", b"Q", b"@"):
            assert not gate.absent_from(data[:pos] + member + data[pos + 1 :])


@pytest.mark.parametrize("use_libc", [True, False])
def test_byteset_counts_a_nul_and_non_ascii_bytes_as_members(use_libc: bool) -> None:
    """A NUL ends a C string: a buffer holding one is never cleared, whatever the set."""
    gate = ByteSet([ord("@"), *range(0x80, 0x100)], use_libc=use_libc)
    assert gate.absent_from(b'{"text": "plain words"}')
    assert not gate.absent_from(b'{"text": "a\x00b"}')
    assert not gate.absent_from("{'text': 'Zieli\u0144ski'}".encode())
    assert not gate.absent_from("\uff11".encode())  # a fullwidth digit
    only_at = ByteSet([ord("@")], use_libc=use_libc)
    assert only_at.absent_from("caf\u00e9".encode())


def test_byteset_refuses_values_that_are_not_bytes() -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        ByteSet([300])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc exports strcspn")
def test_byteset_uses_the_c_library_on_linux() -> None:
    """The fast path is the one CI and deployments run; its absence would go unnoticed."""
    assert bytescan._STRCSPN is not None
