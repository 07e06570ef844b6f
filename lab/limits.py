"""Every cap the lab puts on untrusted input, with its default and how to raise it.

A support engineer runs the lab on files a customer sent: a certificate, a PKCS#12 export, a
zip of logs. Any of them may be built to hang or exhaust the tool, so each reader checks what
it is about to do against a cap here *before* the work (a size from ``stat()``, a count read
from the ASN.1 header, a zip's central directory) and refuses with
:class:`~lab.errors.LimitExceeded` (exit 2), whose message names the cap and the environment
variable that raises it::

    IBCM_LAB_LIMIT_PKCS12_ITERATIONS=5000000 ibcm-lab check-cert slow.pfx

The table of every cap is docs/limits.md (tests/test_limits.py checks the two agree). The zip
and log-line helpers (:func:`read_untrusted`, :func:`zip_members`, :func:`read_member`,
:func:`bounded_lines`) are
here, at layer 0, so that every reader of customer files (``check-cert`` today, a log
``diagnose`` command later) applies the same caps.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from lab.errors import LimitExceeded, UsageError

ENV_PREFIX = "IBCM_LAB_LIMIT_"


@dataclass(frozen=True)
class Limit:
    """One cap: ``key`` (its environment variable is ``IBCM_LAB_LIMIT_<KEY>``), its default,
    the unit of the number and what it bounds."""

    key: str
    default: int
    unit: str
    what: str
    where: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def value(self) -> int:
        """The default, or the environment variable's whole number when it is set."""
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        text = raw.strip().replace("_", "")
        if not text.isdigit() or len(text) > 18 or int(text) < 1:
            raise UsageError(f"{self.env}={raw[:40]!r}: expected a whole number of {self.unit} "
                             f"of at least 1 (the default is {self.default})")
        return int(text)

    def exceeded(self, subject: str, found: int | str) -> LimitExceeded:
        """The error for ``subject`` holding ``found`` (more than :attr:`value`)."""
        return LimitExceeded(
            f"{subject}: {found} {self.unit}, more than the limit of {self.value} ({self.what}); "
            f"refused before the work. If you trust the file, raise the limit: "
            f"{self.env}=N", limit=self.key)

    def check(self, subject: str, found: int) -> None:
        """Raise :meth:`exceeded` when ``found`` is over the limit."""
        if found > self.value:
            raise self.exceeded(subject, found)


CERT_FILE_BYTES = Limit("cert_file_bytes", 1024 * 1024, "bytes",
                        "size of a certificate file", "check-cert, --chain")
CERTS_PER_FILE = Limit("certs_per_file", 1000, "certificates",
                       "certificates in one PEM, PKCS#7 or PKCS#12 file", "check-cert")
PKCS12_ITERATIONS = Limit("pkcs12_iterations", 2_000_000, "iterations",
                          "one PKCS#12 MAC or key-derivation iteration count", "check-cert")
PKCS12_TOTAL_ITERATIONS = Limit("pkcs12_total_iterations", 10_000_000, "iterations",
                                "MAC and key-derivation iterations of one PKCS#12 file, "
                                "summed over every bag and every password tried", "check-cert")
PKCS12_LEGACY_ITERATIONS = Limit(
    "pkcs12_legacy_iterations", 200_000, "iterations",
    "iterations of SafeContents encrypted with the legacy PKCS#12 3DES scheme, which the lab "
    "decrypts itself to count the bags inside", "check-cert")
PKCS12_BAGS = Limit("pkcs12_bags", 1000, "bags", "safe bags of one PKCS#12 file", "check-cert")
PKCS12_NESTING = Limit("pkcs12_nesting", 3, "levels",
                       "nested SafeContents bags in a PKCS#12 file", "check-cert")
SAN_ENTRIES = Limit("san_entries", 1000, "names",
                    "names in one certificate's Subject Alternative Name", "check-cert")
URLS_PER_EXTENSION = Limit("urls_per_extension", 100, "URLs",
                           "URLs in one certificate's CDP or AIA extension", "check-cert")
EXTENSION_BYTES = Limit("extension_bytes", 64 * 1024, "bytes",
                        "DER size of one certificate extension", "check-cert")
SCENARIO_FILE_BYTES = Limit("scenario_file_bytes", 1024 * 1024, "bytes",
                            "size of a scenario file", "run, serve, ui, pytest plugin")
CRL_BYTES = Limit("crl_bytes", 10 * 1024 * 1024, "bytes", "size of a CRL file read from disk",
                  "readers of customer files (diagnose)")
LOG_LINE_CHARS = Limit("log_line_chars", 64 * 1024, "bytes", "one line of a log file",
                       "bounded_lines (diagnose)")
ZIP_MEMBERS = Limit("zip_members", 10_000, "members", "members of one zip file",
                    "zip_members (diagnose)")
ZIP_EXPANDED_BYTES = Limit("zip_expanded_bytes", 512 * 1024 * 1024, "bytes",
                           "bytes a zip file expands to", "zip_members, read_member (diagnose)")
ZIP_RATIO = Limit("zip_ratio", 100, "times", "expansion ratio of one zip member",
                  "zip_members (diagnose)")

ALL: tuple[Limit, ...] = (
    CERT_FILE_BYTES, CERTS_PER_FILE, PKCS12_ITERATIONS, PKCS12_TOTAL_ITERATIONS,
    PKCS12_LEGACY_ITERATIONS, PKCS12_BAGS,
    PKCS12_NESTING, SAN_ENTRIES, URLS_PER_EXTENSION, EXTENSION_BYTES, SCENARIO_FILE_BYTES,
    CRL_BYTES,
    LOG_LINE_CHARS, ZIP_MEMBERS, ZIP_EXPANDED_BYTES, ZIP_RATIO,
)


# -- files -------------------------------------------------------------------------------------

def read_untrusted(path: str | os.PathLike[str], limit: Limit, expected: str) -> bytes:
    """The bytes of a customer's file (a CRL with :data:`CRL_BYTES`, ...): refused
    (UsageError) when it is not a regular file (a named pipe, a device, a folder: never
    opened, so nothing blocks), and (LimitExceeded) when over ``limit``, from its size before
    reading and from the bytes read (a file growing meanwhile)."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as e:
        raise UsageError(f"{name}: cannot read it ({e.strerror or e}); expected {expected}"
                         ) from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name}: not a regular file (expected {expected})")
    limit.check(f"{name}: the file has", st.st_size)
    try:
        with open(name, "rb") as f:
            data = f.read(limit.value + 1)
    except OSError as e:
        raise UsageError(f"{name}: cannot read it ({e.strerror or e})") from None
    limit.check(f"{name}: the file has", len(data))
    return data


# -- zip files ---------------------------------------------------------------------------------

def zip_members(zf: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """The file members of ``zf`` (named ``name`` in errors), checked from the central
    directory alone: their count, their total expanded size, each one's expansion ratio, and
    names that would leave the folder they are extracted to (``..``, absolute, NUL)."""
    infos = zf.infolist()
    ZIP_MEMBERS.check(f"{name}: the zip file", len(infos))
    total = 0
    members: list[zipfile.ZipInfo] = []
    for info in infos:
        parts = PurePosixPath(info.filename.replace("\\", "/"))
        if (info.filename.startswith(("/", "\\")) or ".." in parts.parts or "\x00" in
                info.filename or (len(info.filename) > 1 and info.filename[1] == ":")):
            raise UsageError(f"{name}: member {info.filename[:80]!r} would be written outside "
                             "the folder it is extracted to (an absolute path or '..'): "
                             "refused")
        if info.is_dir():
            continue
        total += info.file_size
        ZIP_EXPANDED_BYTES.check(f"{name}: the zip file's members", total)
        ratio = info.file_size // max(info.compress_size, 1)
        ZIP_RATIO.check(f"{name}: member {info.filename[:80]!r} expands", ratio)
        members.append(info)
    return members


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """The bytes of one member of :func:`zip_members`, read in pieces and stopped at the size
    its header announced (a header that lies about the size is refused, not believed)."""
    budget = min(info.file_size, ZIP_EXPANDED_BYTES.value)
    out = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(64 * 1024):
            out += chunk
            if len(out) > budget:
                raise ZIP_EXPANDED_BYTES.exceeded(
                    f"{name}: member {info.filename[:80]!r} expands past its header's size; "
                    "it", f"over {budget}")
    return bytes(out)


# -- log files -------------------------------------------------------------------------------

def bounded_lines(stream: BinaryIO, name: str) -> Iterator[bytes]:
    """The lines of ``stream`` (without their line break), each read with at most
    :data:`LOG_LINE_CHARS` bytes in memory: a longer line is refused with its number."""
    cap = LOG_LINE_CHARS.value
    number = 0
    while True:
        line = stream.readline(cap + 1)
        if not line:
            return
        number += 1
        if len(line) > cap and not line.endswith(b"\n"):
            raise LOG_LINE_CHARS.exceeded(f"{name}, line {number}", f"over {cap}")
        yield line.rstrip(b"\r\n")


__all__ = ["ALL", "CERTS_PER_FILE", "CERT_FILE_BYTES", "CRL_BYTES", "ENV_PREFIX",
           "EXTENSION_BYTES", "LOG_LINE_CHARS", "PKCS12_BAGS", "PKCS12_ITERATIONS",
           "PKCS12_LEGACY_ITERATIONS",
           "PKCS12_NESTING", "PKCS12_TOTAL_ITERATIONS", "SAN_ENTRIES", "SCENARIO_FILE_BYTES",
           "URLS_PER_EXTENSION",
           "ZIP_EXPANDED_BYTES", "ZIP_MEMBERS", "ZIP_RATIO", "Limit", "bounded_lines",
           "read_member", "read_untrusted", "zip_members"]
