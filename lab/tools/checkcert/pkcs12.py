"""The hand-written DER reading check-cert does before it hands bytes to ``cryptography``.

Three questions, answered without decoding the whole file:

* :func:`der_length`: how long the outer DER element says it is (a cut-short file is told from
  a file with trailing bytes);
* :func:`looks_like_pkcs12`: whether the file is a PFX (PKCS#12);
* :func:`mac_iterations`: how many MAC iterations the PFX asks for;
* :func:`survey`: the work OpenSSL would do to open the file with a password (the MAC's and
  every key derivation's iteration counts, the number of bags, how deep SafeContents nest),
  checked against the caps of :mod:`lab.limits` *before* OpenSSL is called, so a file built
  to take minutes (a valid MAC over bags asking for 2**31 PBKDF2 rounds each) is refused in
  milliseconds. Encrypted SafeContents are decrypted here (PBES2 with AES or 3DES, and the
  PKCS#12 3DES scheme, up to ``IBCM_LAB_LIMIT_PKCS12_LEGACY_ITERATIONS``: its SHA-1 key
  derivation runs in Python here) to see the bags inside them; RC2- and RC4-encrypted ones
  (legacy exports, which hold certificates) are counted by their own key derivation only:
  the bags inside them are not seen before OpenSSL opens them.

Every function reads at most the bytes it is given and returns None (or False) for what it
cannot read; the caller decides what to say.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from lab import limits

MAX_PKCS12_ITERATIONS = limits.PKCS12_ITERATIONS.default
"""More MAC iterations than this and the file is refused unopened (the default of
``IBCM_LAB_LIMIT_PKCS12_ITERATIONS``)."""

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


# -- the survey ------------------------------------------------------------------------------

_OID = 0x06
_DATA = bytes.fromhex("2a864886f70d010701")
_ENCRYPTED_DATA = bytes.fromhex("2a864886f70d010706")
_BAG = bytes.fromhex("2a864886f70d010c0a01")  # + 1 keyBag ... 6 safeContentsBag
_SHROUDED_KEY_BAG = _BAG + b"\x02"
_SAFE_CONTENTS_BAG = _BAG + b"\x06"
_PBES2 = bytes.fromhex("2a864886f70d01050d")
_PBKDF2 = bytes.fromhex("2a864886f70d01050c")
_PKCS12_PBE = bytes.fromhex("2a864886f70d010c01")  # + 1..6
_PRF = {bytes.fromhex("2a864886f70d0207"): hashes.SHA1(),
        bytes.fromhex("2a864886f70d0208"): hashes.SHA224(),
        bytes.fromhex("2a864886f70d0209"): hashes.SHA256(),
        bytes.fromhex("2a864886f70d020a"): hashes.SHA384(),
        bytes.fromhex("2a864886f70d020b"): hashes.SHA512()}
_AES_CBC = {bytes.fromhex("608648016503040102"): 16, bytes.fromhex("608648016503040116"): 24,
            bytes.fromhex("60864801650304012a"): 32}
_DES_EDE3_CBC = bytes.fromhex("2a864886f70d0307")
_MAX_DEPTH = 64
"""ASN.1 nesting the walker follows at most (OpenSSL's own limit is 30)."""


class Unreadable(ValueError):
    """The walker cannot follow the structure (OpenSSL decides what it is)."""


@dataclass
class Survey:
    """What opening the PFX with one password costs: iteration counts and bags."""

    mac_iterations: int = 0
    kdf_iterations: list[int] = field(default_factory=list)
    bags: int = 0
    depth: int = 0
    opaque: int = 0
    """Encrypted SafeContents the walker could not look into."""
    attempts: int = 1
    """Passwords that will be tried: each pays every iteration again."""

    @property
    def iterations(self) -> int:
        return self.mac_iterations + sum(self.kdf_iterations)


def _element(data: bytes, at: int, end: int, depth: int = 0) -> tuple[int, int, int, int]:
    """(tag, start of content, end of content, end of element) of the BER element at ``at``;
    indefinite lengths are followed to their end-of-contents octets."""
    if depth > _MAX_DEPTH:
        raise Unreadable("nested too deep")
    if at + 2 > end:
        raise Unreadable("truncated")
    tag, first, start = data[at], data[at + 1], at + 2
    if tag & 0x1F == 0x1F:
        raise Unreadable("high tag number")
    if first == 0x80:  # indefinite (constructed only): children up to 00 00
        if not tag & 0x20:
            raise Unreadable("indefinite primitive")
        pos = start
        while True:
            if pos + 2 > end:
                raise Unreadable("no end-of-contents")
            if data[pos] == 0 and data[pos + 1] == 0:
                return tag, start, pos, pos + 2
            pos = _element(data, pos, end, depth + 1)[3]
    length = first
    if first & 0x80:
        count = first & 0x7F
        if count > 4 or start + count > end:
            raise Unreadable("bad length")
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    if start + length > end:
        raise Unreadable("truncated")
    return tag, start, start + length, start + length


def _kids(data: bytes, start: int, end: int, depth: int = 0) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, c_start, c_end, start = _element(data, start, end, depth)
        out.append((tag, c_start, c_end))
    return out


def _octets(data: bytes, tag: int, start: int, end: int, depth: int = 0) -> bytes:
    """The value of an OCTET STRING (or [n] IMPLICIT one), constructed pieces joined."""
    if not tag & 0x20:
        return data[start:end]
    if depth > _MAX_DEPTH:
        raise Unreadable("nested too deep")
    return b"".join(_octets(data, t, s, e, depth + 1) for t, s, e in _kids(data, start, end))


def _explicit(data: bytes, start: int, end: int) -> tuple[int, int, int]:
    kids = _kids(data, start, end)
    if len(kids) != 1:
        raise Unreadable("explicit tag")
    return kids[0]


def _integer(data: bytes, node: tuple[int, int, int]) -> int:
    tag, start, end = node
    if tag != 0x02 or end - start > 16:
        raise Unreadable("integer")
    return int.from_bytes(data[start:end], "big", signed=True)


@dataclass(frozen=True)
class _Kdf:
    """A password-based encryption's parameters, enough to count it and to decrypt with it."""

    iterations: int
    scheme: bytes
    salt: bytes = b""
    prf: hashes.HashAlgorithm | None = None
    cipher: bytes = b""
    iv: bytes = b""


def _algorithm(data: bytes, node: tuple[int, int, int], subject: str) -> _Kdf:
    """The key derivation of a password-based AlgorithmIdentifier."""
    tag, start, end = node
    kids = _kids(data, start, end)
    if tag != 0x30 or not kids or kids[0][0] != _OID:
        raise Unreadable("algorithm")
    oid = data[kids[0][1]:kids[0][2]]
    params = _kids(data, kids[1][1], kids[1][2]) if len(kids) > 1 and kids[1][0] == 0x30 else []
    if oid == _PBES2:
        if len(params) != 2:
            raise Unreadable("PBES2")
        kdf = _kids(data, params[0][1], params[0][2])
        if not kdf or data[kdf[0][1]:kdf[0][2]] != _PBKDF2:
            from lab.errors import UsageError

            raise UsageError(f"{subject}: the PKCS#12 file derives a key with an algorithm "
                             "other than PBKDF2 (OID "
                             f"{data[kdf[0][1]:kdf[0][2]].hex() if kdf else '?'}): refused; "
                             "re-export it with AES-256 encryption")
        kp = _kids(data, kdf[1][1], kdf[1][2]) if len(kdf) > 1 else []
        if len(kp) < 2 or kp[0][0] != 0x04:
            raise Unreadable("PBKDF2")
        prf: hashes.HashAlgorithm = hashes.SHA1()
        for extra in kp[2:]:
            if extra[0] == 0x30:
                prf_kids = _kids(data, extra[1], extra[2])
                prf = _PRF.get(data[prf_kids[0][1]:prf_kids[0][2]], hashes.SHA1())
        enc = _kids(data, params[1][1], params[1][2])
        cipher = data[enc[0][1]:enc[0][2]] if enc and enc[0][0] == _OID else b""
        iv = data[enc[1][1]:enc[1][2]] if len(enc) > 1 and enc[1][0] == 0x04 else b""
        return _Kdf(_integer(data, kp[1]), _PBES2, data[kp[0][1]:kp[0][2]], prf, cipher, iv)
    if len(params) >= 2 and params[0][0] == 0x04 and params[1][0] == 0x02:
        return _Kdf(_integer(data, params[1]), oid, data[params[0][1]:params[0][2]])
    return _Kdf(0, oid)


def _p12_kdf(password: bytes, salt: bytes, which: int, iterations: int, size: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-1 (the PKCS#12 PBE schemes)."""
    u, v = 20, 64
    d = bytes([which]) * v
    s = (salt * v)[:v * -(-len(salt) // v)]
    p = (password * v)[:v * -(-len(password) // v)]
    i = bytearray(s + p)
    out = b""
    while len(out) < size:
        a = d + bytes(i)
        for _ in range(iterations):
            a = hashlib.sha1(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j:j + v], "big") + b + 1) % (1 << (8 * v))
            i[j:j + v] = block.to_bytes(v, "big")
    return out[:size]


def _decrypt(kdf: _Kdf, password: bytes | None, ciphertext: bytes, subject: str
             ) -> bytes | None:
    """The plaintext of encrypted SafeContents, or None when the walker cannot decrypt them
    (another cipher, or a wrong password: OpenSSL then fails as well)."""
    try:
        if kdf.scheme == _PBES2 and kdf.prf is not None:
            if kdf.cipher in _AES_CBC:
                key = PBKDF2HMAC(kdf.prf, _AES_CBC[kdf.cipher], kdf.salt,
                                 kdf.iterations).derive(password or b"")
                decryptor = Cipher(algorithms.AES(key), modes.CBC(kdf.iv)).decryptor()
                block = 128
            elif kdf.cipher == _DES_EDE3_CBC:
                key = PBKDF2HMAC(kdf.prf, 24, kdf.salt, kdf.iterations).derive(password or b"")
                decryptor = Cipher(TripleDES(key), modes.CBC(kdf.iv)).decryptor()
                block = 64
            else:
                return None
        elif kdf.scheme == _PKCS12_PBE + b"\x03":
            limits.PKCS12_LEGACY_ITERATIONS.check(
                f"{subject}: encrypted SafeContents of the PKCS#12 file (legacy 3DES) ask for",
                kdf.iterations)
            bmp = (password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"
                   if password is not None else b"")
            key = _p12_kdf(bmp, kdf.salt, 1, kdf.iterations, 24)
            iv = _p12_kdf(bmp, kdf.salt, 2, kdf.iterations, 8)
            decryptor = Cipher(TripleDES(key), modes.CBC(iv)).decryptor()
            block = 64
        else:
            return None
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(block).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except (ValueError, UnicodeDecodeError):
        return None


def _count(survey: Survey, kdf: _Kdf, subject: str) -> None:
    limits.PKCS12_ITERATIONS.check(
        f"{subject}: a key derivation of the PKCS#12 file asks for", kdf.iterations)
    survey.kdf_iterations.append(kdf.iterations)
    _total(survey, subject)


def _total(survey: Survey, subject: str) -> None:
    tried = f" for each of {survey.attempts} passwords tried" if survey.attempts > 1 else ""
    limits.PKCS12_TOTAL_ITERATIONS.check(
        f"{subject}: opening the PKCS#12 file takes {survey.iterations} MAC and key-derivation "
        f"iterations{tried}, in all", survey.iterations * survey.attempts)


def _bags(data: bytes, node: tuple[int, int, int], password: bytes | None, survey: Survey,
          subject: str, level: int) -> None:
    """Count the bags of the SafeContents SEQUENCE ``node`` and their key derivations."""
    limits.PKCS12_NESTING.check(f"{subject}: the PKCS#12 file's SafeContents nest", level)
    survey.depth = max(survey.depth, level)
    tag, s_start, s_end = node
    if tag != 0x30:
        raise Unreadable("SafeContents")
    for bag_tag, b_start, b_end in _kids(data, s_start, s_end):
        survey.bags += 1
        limits.PKCS12_BAGS.check(f"{subject}: the PKCS#12 file holds", survey.bags)
        parts = _kids(data, b_start, b_end)
        if bag_tag != 0x30 or len(parts) < 2 or parts[0][0] != _OID:
            raise Unreadable("SafeBag")
        kind = data[parts[0][1]:parts[0][2]]
        value = _explicit(data, parts[1][1], parts[1][2])
        if kind == _SHROUDED_KEY_BAG:
            info = _kids(data, value[1], value[2])
            if not info:
                raise Unreadable("EncryptedPrivateKeyInfo")
            _count(survey, _algorithm(data, info[0], subject), subject)
        elif kind == _SAFE_CONTENTS_BAG:
            _bags(data, value, password, survey, subject, level + 1)


def _plain_bags(plain: bytes, password: bytes | None, survey: Survey, subject: str) -> None:
    tag, start, end, _ = _element(plain, 0, len(plain))
    _bags(plain, (tag, start, end), password, survey, subject, 1)


def survey(data: bytes, password: bytes | None, subject: str, attempts: int = 1) -> Survey:
    """The cost of opening the PFX ``data`` with ``password``, refused (LimitExceeded) as soon
    as a cap of :mod:`lab.limits` is passed; Unreadable when the walker cannot follow it."""
    out = Survey(attempts=attempts)
    _, start, end, _ = _element(data, 0, len(data))
    top = _kids(data, start, end)
    if len(top) < 2:
        raise Unreadable("PFX")
    if len(top) >= 3:
        mac = _kids(data, top[2][1], top[2][2])
        if len(mac) >= 3:
            out.mac_iterations = _integer(data, mac[2])
            limits.PKCS12_ITERATIONS.check(
                f"{subject}: the PKCS#12 file asks for {out.mac_iterations} MAC iterations "
                f"(more than {limits.PKCS12_ITERATIONS.value})", out.mac_iterations)
            _total(out, subject)
    auth = _kids(data, top[1][1], top[1][2])
    if len(auth) != 2 or data[auth[0][1]:auth[0][2]] != _DATA:
        raise Unreadable("authSafe")
    content = _explicit(data, auth[1][1], auth[1][2])
    safe = _octets(data, *content)
    _, s_start, s_end, _ = _element(safe, 0, len(safe))
    for ci_tag, ci_start, ci_end in _kids(safe, s_start, s_end):
        ci = _kids(safe, ci_start, ci_end)
        if ci_tag != 0x30 or len(ci) != 2 or ci[0][0] != _OID:
            raise Unreadable("ContentInfo")
        kind = safe[ci[0][1]:ci[0][2]]
        inner = _explicit(safe, ci[1][1], ci[1][2])
        if kind == _DATA:
            plain = _octets(safe, *inner)
            _plain_bags(plain, password, out, subject)
        elif kind == _ENCRYPTED_DATA:
            enc = _kids(safe, inner[1], inner[2])
            if len(enc) < 2:
                raise Unreadable("EncryptedData")
            eci = _kids(safe, enc[1][1], enc[1][2])
            if len(eci) < 2:
                raise Unreadable("EncryptedContentInfo")
            kdf = _algorithm(safe, eci[1], subject)
            _count(out, kdf, subject)
            ciphertext = _octets(safe, *eci[2]) if len(eci) > 2 else b""
            plain_or_none = _decrypt(kdf, password, ciphertext, subject)
            if plain_or_none is None:
                out.opaque += 1
            else:
                try:
                    _plain_bags(plain_or_none, password, out, subject)
                except Unreadable:
                    out.opaque += 1
        else:
            raise Unreadable("content type")
    return out
