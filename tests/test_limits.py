"""The caps on untrusted input (issue 20, docs/limits.md, lab/limits.py).

Every hostile file here is built by hand, byte by byte where ``cryptography`` would refuse to
write it (a valid MAC over bags that ask for 2**31 key-derivation rounds, 1500 bags, SafeContents
nested five deep, BER indefinite lengths). Each must end in exit 2 with one line naming the cap
and the environment variable that raises it; each has a twin (the same builder with modest
numbers, or the cap raised) that opens, which proves the builder writes files OpenSSL reads.

No wall-clock assertion: a file that would hang runs in a child process with a generous
time-out (a hang guard, :data:`HANG`), never a speed check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import io
import os
import re
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labtest import ROOT

from lab import limits
from lab.cli import main
from lab.errors import LimitExceeded, UsageError

HANG = 120
"""Seconds a child process may run before the test calls it a hang (not a speed check)."""
PASSWORD = "Pa55-w0rd!"
FQDN = "mp01.contoso.local"

_KEY = ec.generate_private_key(ec.SECP256R1())
_NOW = dt.datetime.now(dt.UTC)


def _cert(extensions: list[tuple[x509.ExtensionType, bool]] | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, FQDN)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(_KEY.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_NOW - dt.timedelta(days=1))
               .not_valid_after(_NOW + dt.timedelta(days=300)))
    for ext, critical in extensions if extensions is not None else [
            (x509.SubjectAlternativeName([x509.DNSName(FQDN)]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]:
        builder = builder.add_extension(ext, critical)
    return builder.sign(_KEY, hashes.SHA256())


CERT = _cert()
CERT_DER = CERT.public_bytes(serialization.Encoding.DER)


# ------------------------------------------------------------------------------------------
# A PKCS#12 writer that writes what cryptography will not
# ------------------------------------------------------------------------------------------

def der(tag: int, content: bytes, *, ber: bool = False) -> bytes:
    """One element; ``ber`` writes a constructed one with an indefinite length."""
    if ber:
        return bytes([tag, 0x80]) + content + b"\x00\x00"
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def seq(*parts: bytes, ber: bool = False) -> bytes:
    return der(0x30, b"".join(parts), ber=ber)


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            chunk.append(0x80 | (n & 0x7F))
        body += bytes(reversed(chunk))
    return der(0x06, bytes(body))


def integer(n: int) -> bytes:
    return der(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def octets(data: bytes) -> bytes:
    return der(0x04, data)


def explicit0(inner: bytes, *, ber: bool = False) -> bytes:
    return der(0xA0, inner, ber=ber)


DATA = "1.2.840.113549.1.7.1"
BAG = "1.2.840.113549.1.12.10.1."


def cert_bag(cert_der: bytes = CERT_DER) -> bytes:
    return seq(oid(BAG + "3"), explicit0(seq(oid("1.2.840.113549.1.9.22.1"),
                                             explicit0(octets(cert_der)))))


def shrouded_key_bag(iterations: int) -> bytes:
    """The key, PBES2-encrypted (PBKDF2-HMAC-SHA256, AES-256-CBC) with ``iterations``."""
    salt, iv = os.urandom(16), os.urandom(16)
    pkcs8 = _KEY.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    if iterations <= 10_000:  # a real encryption; above, nothing must ever decrypt it
        key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(PASSWORD.encode())
        padder = padding.PKCS7(128).padder()
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        blob = enc.update(padder.update(pkcs8) + padder.finalize()) + enc.finalize()
    else:
        blob = os.urandom(len(pkcs8) + 16 - len(pkcs8) % 16)
    algorithm = seq(oid("1.2.840.113549.1.5.13"), seq(
        seq(oid("1.2.840.113549.1.5.12"), seq(octets(salt), integer(iterations),
                                              seq(oid("1.2.840.113549.2.9"), der(0x05, b"")))),
        seq(oid("2.16.840.1.101.3.4.1.42"), octets(iv))))
    return seq(oid(BAG + "2"), explicit0(seq(algorithm, octets(blob))))


def nested_bag(inner: list[bytes]) -> bytes:
    return seq(oid(BAG + "6"), explicit0(seq(*inner)))


def _p12_mac_key(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 7292 B.2, SHA-1, ID 3 (the MAC key): written out here, not taken from the lab."""
    v, bmp = 64, password.encode("utf-16-be") + b"\x00\x00"
    i = (salt * v)[:v * -(-len(salt) // v)] + (bmp * v)[:v * -(-len(bmp) // v)]
    a = b"\x03" * v + i
    for _ in range(iterations):
        a = hashlib.sha1(a).digest()
    return a


def pfx(bags: list[bytes], *, mac_iterations: int = 2048, ber: bool = False) -> bytes:
    """A PFX of one plain SafeContents holding ``bags``, with a valid SHA-1 MAC."""
    auth_safe = seq(seq(oid(DATA), explicit0(octets(seq(*bags)))))
    salt = os.urandom(8)
    mac_iter = min(mac_iterations, 4096)  # the MAC of an absurd count is never checked
    mac = hmac.new(_p12_mac_key(PASSWORD, salt, mac_iter), auth_safe, "sha1").digest()
    mac_data = seq(seq(seq(oid("1.3.14.3.2.26"), der(0x05, b"")), octets(mac)),
                   octets(salt), integer(mac_iterations))
    return seq(integer(3), seq(oid(DATA), explicit0(octets(auth_safe), ber=ber), ber=ber),
               mac_data, ber=ber)


def cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ibcm-lab: error: "), err
    return lines[0]


def check(tmp_path: Path, data: bytes, *extra: str, name: str = "hostile.pfx",
          env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``check-cert`` in a child process, stopped as a hang after :data:`HANG` s."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lab", "check-cert", str(path), "--no-replay",
             "--password", PASSWORD, *extra],
            capture_output=True, text=True, timeout=HANG,
            env={**os.environ, "NO_COLOR": "1", **(env or {})}, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(f"check-cert still running after {HANG} s")
    return done.returncode, done.stdout, done.stderr


def refused(tmp_path: Path, data: bytes, limit: limits.Limit) -> str:
    code, out, err = check(tmp_path, data)
    assert (code, out) == (2, ""), err
    line = one_line(err)
    assert f"{limit.env}=N" in line and f"more than the limit of {limit.value}" in line, line
    return line


# ------------------------------------------------------------------------------------------
# PKCS#12
# ------------------------------------------------------------------------------------------

def test_a_hand_built_pkcs12_opens() -> None:
    """The writer's twin: modest numbers, nesting and BER all open in OpenSSL."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    for data in (pfx([shrouded_key_bag(1000), cert_bag()]),
                 pfx([nested_bag([nested_bag([shrouded_key_bag(1000)])]), cert_bag()]),
                 pfx([shrouded_key_bag(1000), cert_bag()], ber=True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not be parsed as DER"
            key, cert, _ = pkcs12.load_key_and_certificates(data, PASSWORD.encode())
        assert key is not None and cert == CERT


def test_the_twin_opens_in_check_cert(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, pfx([shrouded_key_bag(1000), cert_bag()]))
    assert code in (0, 1) and not err and "PKCS#12" in out


def test_a_valid_mac_over_a_bag_asking_for_2_31_rounds_is_refused(tmp_path: Path) -> None:
    """The issue's file: the MAC verifies (2048 iterations), then OpenSSL would run
    2**31 - 1 PBKDF2 rounds for the key bag (minutes). Refused from the count read."""
    line = refused(tmp_path, pfx([shrouded_key_bag(2**31 - 1), cert_bag()]),
                   limits.PKCS12_ITERATIONS)
    assert "key derivation" in line and "2147483647" in line


def test_the_same_file_in_ber_is_refused_too(tmp_path: Path) -> None:
    """Indefinite lengths (BER, which OpenSSL reads) must not hide the counts."""
    refused(tmp_path, pfx([shrouded_key_bag(2**31 - 1), cert_bag()], ber=True),
            limits.PKCS12_ITERATIONS)
    line = refused(tmp_path, pfx([cert_bag()], mac_iterations=2**31 - 1, ber=True),
                   limits.PKCS12_ITERATIONS)
    assert "MAC iterations" in line


def test_many_bags_each_under_the_cap_are_refused_by_the_total(tmp_path: Path) -> None:
    each = limits.PKCS12_ITERATIONS.default
    count = limits.PKCS12_TOTAL_ITERATIONS.default // each + 2
    line = refused(tmp_path, pfx([shrouded_key_bag(each) for _ in range(count)]
                                 + [cert_bag()]), limits.PKCS12_TOTAL_ITERATIONS)
    assert "in all" in line


def test_more_bags_than_the_cap_are_refused(tmp_path: Path) -> None:
    bag = cert_bag()
    line = refused(tmp_path, pfx([bag] * (limits.PKCS12_BAGS.default + 1)),
                   limits.PKCS12_BAGS)
    assert "bags" in line


def test_nesting_deeper_than_the_cap_is_refused_and_the_cap_can_be_raised(
        tmp_path: Path) -> None:
    inner = [shrouded_key_bag(1000)]
    for _ in range(limits.PKCS12_NESTING.default):
        inner = [nested_bag(inner)]
    data = pfx([*inner, cert_bag()])
    refused(tmp_path, data, limits.PKCS12_NESTING)
    code, out, err = check(tmp_path, data, env={limits.PKCS12_NESTING.env: "10"})
    assert code in (0, 1) and not err and out


def test_an_encrypted_safe_contents_is_looked_into(tmp_path: Path) -> None:
    """A key bag hidden in PBES2-encrypted SafeContents (the layout cryptography and
    Windows write) is counted too: the walker decrypts with the password given."""
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    enc = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(1000)
           .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
           .hmac_hash(hashes.SHA256()).build(PASSWORD.encode()))
    data = pkcs12.serialize_key_and_certificates(b"mp", _KEY, CERT, None, enc)
    code, out, err = check(tmp_path, data, env={limits.PKCS12_BAGS.env: "1"})
    assert code == 2 and "2 bags" in one_line(err)  # the encrypted certificate bag counted
    code, out, err = check(tmp_path, data)
    assert code in (0, 1) and out


def test_legacy_3des_safe_contents_are_looked_into_up_to_their_cap(tmp_path: Path) -> None:
    """The layout of Windows' older exports (3DES, SHA-1): the walker derives the key itself
    (RFC 7292 B.2), so its own work has a cap of its own."""
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    enc = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(1000)
           .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
           .hmac_hash(hashes.SHA1()).build(PASSWORD.encode()))
    data = pkcs12.serialize_key_and_certificates(b"mp", _KEY, CERT, None, enc)
    code, _, err = check(tmp_path, data, env={limits.PKCS12_BAGS.env: "1"})
    assert code == 2 and "2 bags" in one_line(err)  # the certificate inside was counted
    code, _, err = check(tmp_path, data, env={limits.PKCS12_LEGACY_ITERATIONS.env: "999"})
    assert code == 2 and f"{limits.PKCS12_LEGACY_ITERATIONS.env}=N" in one_line(err)
    code, out, err = check(tmp_path, data)
    assert code in (0, 1) and not err and out


def test_an_absurd_env_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.PKCS12_BAGS.env, "lots")
    with pytest.raises(UsageError, match="IBCM_LAB_LIMIT_PKCS12_BAGS='lots': expected a whole"):
        _ = limits.PKCS12_BAGS.value


# ------------------------------------------------------------------------------------------
# Certificates
# ------------------------------------------------------------------------------------------

def test_more_certificates_in_a_pem_file_than_the_cap(tmp_path: Path) -> None:
    pem = CERT.public_bytes(serialization.Encoding.PEM)
    line = refused(tmp_path, pem * (limits.CERTS_PER_FILE.default + 1),
                   limits.CERTS_PER_FILE)
    assert "PEM" in line or "certificates" in line


@pytest.mark.parametrize(("what", "extension", "limit"), [
    ("SAN", (x509.SubjectAlternativeName([x509.DNSName(f"h{i}.contoso.local")
                                          for i in range(1001)]), False), limits.SAN_ENTRIES),
    ("CDP", (x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier(f"http://h{i}.contoso.local/x.crl")], None, None, None)
        for i in range(101)]), False), limits.URLS_PER_EXTENSION),
    ("policy", (x509.CertificatePolicies([x509.PolicyInformation(
        x509.ObjectIdentifier("1.2.3.4"), ["http://cps/" + "x" * 70_000])]), False),
     limits.EXTENSION_BYTES),
])
def test_certificate_extensions_over_their_caps(tmp_path: Path, what: str,
                                                extension: tuple[x509.ExtensionType, bool],
                                                limit: limits.Limit) -> None:
    data = _cert([extension]).public_bytes(serialization.Encoding.PEM)
    refused(tmp_path, data, limit)


def test_extensions_just_under_the_caps_are_linted(tmp_path: Path) -> None:
    data = _cert([
        (x509.SubjectAlternativeName([x509.DNSName(f"h{i}.contoso.local")
                                      for i in range(1000)]), False),
        (x509.CRLDistributionPoints([x509.DistributionPoint(
            [x509.UniformResourceIdentifier(f"http://h{i}.contoso.local/x.crl")], None, None,
            None) for i in range(100)]), False)]).public_bytes(serialization.Encoding.PEM)
    code, out, err = check(tmp_path, data, name="ok.pem")
    assert code in (0, 1) and not err and out


# ------------------------------------------------------------------------------------------
# Things that are not files
# ------------------------------------------------------------------------------------------

def _symlink_loop(tmp_path: Path) -> Path:
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


@pytest.mark.parametrize("kind", ["folder", "device", "symlink loop", "fifo"])
@pytest.mark.parametrize("command", ["check-cert", "run"])
def test_things_that_are_not_files_are_refused(tmp_path: Path, kind: str,
                                               command: str) -> None:
    if kind == "folder":
        target = tmp_path / "folder.pem"
        target.mkdir()
    elif kind == "device":
        target = Path("/dev/zero")
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes")
        target = tmp_path / "pipe.toml"
        os.mkfifo(target)
    else:
        target = _symlink_loop(tmp_path)
    argv = [command, str(target), "--certs", str(tmp_path / "certs")]
    if command == "check-cert":
        argv.append("--no-replay")
    try:
        done = subprocess.run([sys.executable, "-m", "lab", *argv], capture_output=True,
                              text=True, timeout=HANG, env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} on a {kind} still running after {HANG} s")
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert str(target) in line or target.name in line, line


# ------------------------------------------------------------------------------------------
# Zip files and log lines (the helpers a diagnose command will use)
# ------------------------------------------------------------------------------------------

def _zip(members: dict[str, bytes]) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return zipfile.ZipFile(io.BytesIO(buffer.getvalue()))


def test_read_untrusted_refuses_pipes_devices_and_big_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crl = tmp_path / "ca.crl"
    crl.write_bytes(b"0" * 2000)
    assert limits.read_untrusted(crl, limits.CRL_BYTES, "a CRL") == b"0" * 2000
    monkeypatch.setenv(limits.CRL_BYTES.env, "1000")
    with pytest.raises(LimitExceeded, match="2000 bytes, more than the limit of 1000"):
        limits.read_untrusted(crl, limits.CRL_BYTES, "a CRL")
    for odd in (Path("/dev/zero"), tmp_path):
        with pytest.raises(UsageError, match="not a regular file"):
            limits.read_untrusted(odd, limits.CRL_BYTES, "a CRL")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.crl")
        with pytest.raises(UsageError, match="not a regular file"):
            limits.read_untrusted(tmp_path / "pipe.crl", limits.CRL_BYTES, "a CRL")


def test_a_normal_zip_is_read() -> None:
    zf = _zip({"CcmMessaging.log": b"line\n" * 100, "logs/LocationServices.log": b"x\n"})
    members = limits.zip_members(zf, "logs.zip")
    assert [m.filename for m in members] == ["CcmMessaging.log", "logs/LocationServices.log"]
    assert limits.read_member(zf, members[0], "logs.zip") == b"line\n" * 100


def test_a_zip_bomb_is_refused_from_its_directory() -> None:
    zf = _zip({"bomb.log": b"\x00" * (20 * 1024 * 1024)})
    with pytest.raises(LimitExceeded) as e:
        limits.zip_members(zf, "bomb.zip")
    assert e.value.limit == "zip_ratio" and "IBCM_LAB_LIMIT_ZIP_RATIO=N" in str(e.value)


def test_too_many_members_and_too_much_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.ZIP_MEMBERS.env, "3")
    with pytest.raises(LimitExceeded, match="4 members, more than the limit of 3"):
        limits.zip_members(_zip({f"{i}.log": b"x" for i in range(4)}), "many.zip")
    monkeypatch.delenv(limits.ZIP_MEMBERS.env)
    monkeypatch.setenv(limits.ZIP_EXPANDED_BYTES.env, "1000")
    with pytest.raises(LimitExceeded, match="IBCM_LAB_LIMIT_ZIP_EXPANDED_BYTES=N"):
        limits.zip_members(_zip({"a.log": os.urandom(600), "b.log": os.urandom(600)}), "z")


@pytest.mark.parametrize("name", ["../evil.log", "/etc/evil.log", "a/../../evil.log",
                                  "C:/evil.log", "..\\evil.log"])
def test_zip_members_that_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="outside the folder"):
        limits.zip_members(_zip({name: b"x"}), "slip.zip")


def test_a_member_that_lies_about_its_size_is_cut() -> None:
    zf = _zip({"a.log": b"y" * 5000})
    info = zf.infolist()[0]
    info.file_size = 100  # what a forged central directory says
    with pytest.raises((LimitExceeded, zipfile.BadZipFile)):
        limits.read_member(zf, info, "liar.zip")


def test_log_lines_over_the_cap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.BytesIO(b"short\r\nfine\n")
    assert list(limits.bounded_lines(stream, "a.log")) == [b"short", b"fine"]
    monkeypatch.setenv(limits.LOG_LINE_CHARS.env, "10")
    stream = io.BytesIO(b"short\n" + b"x" * 50 + b"\n")
    with pytest.raises(LimitExceeded, match=r"a.log, line 2: over 10 bytes"):
        list(limits.bounded_lines(stream, "a.log"))


# ------------------------------------------------------------------------------------------
# The page
# ------------------------------------------------------------------------------------------

def test_the_limits_page_lists_every_cap_with_its_default() -> None:
    page = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    rows = {m.group(3): m.group(2) for m in re.finditer(
        r"^\| ([^|]+) \| ([^|]+) \| `(IBCM_LAB_LIMIT_\w+)` \|", page, re.MULTILINE)}
    for limit in limits.ALL:
        assert limit.env in rows, limit.env
        assert rows[limit.env].split()[0] == str(limit.default), (limit.env, rows[limit.env])
