"""The hand-written DER reading check-cert does before it hands bytes to ``cryptography``.

Three questions, answered without decoding the whole file:

* :func:`der_length`: how long the outer DER element says it is (a cut-short file is told from
  a file with trailing bytes);
* :func:`looks_like_pkcs12`: whether the file is a PFX (PKCS#12);
* :func:`mac_iterations`: how many MAC iterations the PFX asks for, so a file asking for
  millions is refused before ``cryptography`` spends minutes on it
  (:data:`MAX_PKCS12_ITERATIONS`).

Every function reads at most the bytes it is given and returns None (or False) for what it
cannot read; the caller decides what to say.
"""

from __future__ import annotations

MAX_PKCS12_ITERATIONS = 10_000_000
"""More MAC iterations than this and the file is refused unopened."""

_PKCS7_DATA_OID = bytes.fromhex("06092a864886f70d0107")  # pkcs7-data / signedData prefix


def der_length(data: bytes) -> int | None:
    """The total length the outer DER element announces (header included), or None."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


def der_element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at ``at``; ValueError if cut short."""
    if at + 2 > len(data):
        raise ValueError("truncated")
    tag, length, start = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad length")
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The DER elements between ``start`` and ``end``, as :func:`der_element` gives them."""
    children = []
    while start < end:
        tag, c_start, c_end = der_element(data, start)
        children.append((tag, c_start, c_end))
        start = c_end
    return children


def looks_like_pkcs12(data: bytes) -> bool:
    """PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (pkcs7 data), ... }."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    header = 2 + (data[1] & 0x7F if data[1] >= 0x80 else 0)
    return (data[header:header + 3] == b"\x02\x01\x03"
            and _PKCS7_DATA_OID in data[header:header + 40])


def mac_iterations(data: bytes) -> int | None:
    """The iteration count of a PFX's macData (None when absent or unreadable)."""
    try:
        _, start, end = der_element(data, 0)
        children = _children(data, start, end)
        if len(children) < 3:
            return None
        _, m_start, m_end = children[2]  # macData ::= SEQUENCE {mac, macSalt, iterations}
        parts = _children(data, m_start, m_end)
        if len(parts) >= 3 and parts[2][0] == 0x02:
            return int.from_bytes(data[parts[2][1]:parts[2][2]], "big")
    except ValueError:
        return None
    return None
