"""SeaHash (64-bit, default seeds), as the upstream receiver uses for UID hashes.

Written from the published algorithm: the input is read as little-endian 64-bit
words (the last one zero-padded), each word is folded into one of four lanes in
turn through a PCG-style diffusion, and the lanes are combined with the length.
"""

from __future__ import annotations

from functools import lru_cache

_MASK = (1 << 64) - 1
_PCG = 0x6EED0E9DA4D94A4F
_SEEDS = (0x16F11FE89B0D677C, 0xB480A793D8E6C86C, 0x6FE2E5AAF078EBC9, 0x14F994A4C5259381)


def _diffuse(x: int) -> int:
    x = (x * _PCG) & _MASK
    x ^= (x >> 32) >> (x >> 60)
    return (x * _PCG) & _MASK


def seahash(data: bytes) -> int:
    """Return SeaHash of ``data`` with the default seeds."""
    a, b, c, d = _SEEDS
    for i in range(0, len(data), 8):
        word = int.from_bytes(data[i : i + 8], "little")
        a, b, c, d = b, c, d, _diffuse(a ^ word)
    return _diffuse(a ^ b ^ c ^ d ^ len(data))


@lru_cache(maxsize=8192)
def uid_hash(uid: str) -> str:
    """The 20-digit zero-padded decimal SeaHash of a UID's ASCII bytes.

    Cached: a series' UIDs repeat in every instance's message."""
    return f"{seahash(uid.encode('ascii', errors='replace')):020d}"
