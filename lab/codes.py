"""Windows, WinHTTP, ConfigMgr and IIS codes: names, values and texts.

Every entry traces to ``docs/reference.md`` (the section is given in the
comment above each table). ``verified`` is False for the few entries the reference marks
as inferred [I] or contradictory [C]; reports show those as the lab's model, never as product
output. Lab-own labels (``kind="lab"``) name outcomes that have no Windows code; their
names start with ``LAB_`` so nobody mistakes them for product identifiers.
"""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """One error code as Windows tools print it."""

    name: str
    """Symbolic name (``CRYPT_E_REVOCATION_OFFLINE``); for ConfigMgr codes without a verified
    symbol, the hex value itself (``0x87D00269``)."""
    value: int
    """The unsigned 32-bit value (HRESULT) or, for WinHTTP/Win32 codes, the small decimal code."""
    kind: str
    """``cryptoapi``, ``winhttp``, ``win32``, ``configmgr`` or ``lab``."""
    message: str
    """The message text as the reference quotes it."""
    verified: bool = True
    """False where the reference marks the name or text as inferred or contradictory."""

    @property
    def hex(self) -> str:
        """``0x80092013`` style (upper-case digits, as ConfigMgr docs print them)."""
        if self.kind in ("winhttp", "win32"):
            return f"0x{self.hresult:08X}"
        return f"0x{self.value:08X}"

    @property
    def hresult(self) -> int:
        """The HRESULT: WinHTTP/Win32 codes map to ``0x8007xxxx``."""
        if self.kind in ("winhttp", "win32") and self.value < 0x10000:
            return 0x80070000 | self.value
        return self.value

    @property
    def signed(self) -> int:
        """The HRESULT as a signed 32-bit integer (how some logs print it)."""
        h = self.hresult
        return h - 0x1_0000_0000 if h & 0x8000_0000 else h

    @property
    def numeric(self) -> bool:
        """False for codes known only by their symbol (lab labels, CCM_E_NO_CLIENT_PKI_CERT)."""
        return self.value != 0

    def identifiers(self) -> set[str]:
        """Every spelling an expectation may use for this code (compared case-insensitively)."""
        if not self.numeric:
            return {self.name.upper()}
        ids = {self.name, self.hex, str(self.signed), str(self.hresult)}
        if self.kind in ("winhttp", "win32"):
            ids.add(str(self.value))
        return {i.upper() for i in ids}


def _c(name: str, value: int, kind: str, message: str, verified: bool = True) -> Code:
    return Code(name, value, kind, message, verified)


# --- CryptoAPI (reference §5.3, verified against winerror.h copies) ------------------------
CRYPT_E_NOT_FOUND = _c("CRYPT_E_NOT_FOUND", 0x80092004, "cryptoapi",
                       "The object or property wasn't found")
CRYPT_E_REVOKED = _c("CRYPT_E_REVOKED", 0x80092010, "cryptoapi",
                     "The certificate or signature has been revoked")
CRYPT_E_NO_REVOCATION_CHECK = _c(
    "CRYPT_E_NO_REVOCATION_CHECK", 0x80092012, "cryptoapi",
    "The called function wasn't able to do a revocation check on the certificate or signature.")
CRYPT_E_REVOCATION_OFFLINE = _c(
    "CRYPT_E_REVOCATION_OFFLINE", 0x80092013, "cryptoapi",
    "The revocation function was unable to check revocation because the revocation server "
    "was offline.")
CERT_E_EXPIRED = _c("CERT_E_EXPIRED", 0x800B0101, "cryptoapi",
                    "A required certificate is not within its validity period.")
CERT_E_UNTRUSTEDROOT = _c(
    "CERT_E_UNTRUSTEDROOT", 0x800B0109, "cryptoapi",
    "A certification chain processed correctly, but terminated in a root certificate which "
    "isn't trusted by the trust provider.")
CERT_E_CHAINING = _c(
    "CERT_E_CHAINING", 0x800B010A, "cryptoapi",
    "A chain of certs didn't chain as they should in a certain application of chaining.")
CERT_E_CN_NO_MATCH = _c("CERT_E_CN_NO_MATCH", 0x800B010F, "cryptoapi",
                        "The certificate's CN name does not match the passed value.")
CERT_E_WRONG_USAGE = _c("CERT_E_WRONG_USAGE", 0x800B0110, "cryptoapi",
                        "The certificate is not valid for the requested usage.")
TRUST_E_CERT_SIGNATURE = _c("TRUST_E_CERT_SIGNATURE", 0x80096004, "cryptoapi",
                            "The signature of the certificate can not be verified.")

# --- WinHTTP (reference §5.4) ------------------------------------------------------------
ERROR_WINHTTP_TIMEOUT = _c("ERROR_WINHTTP_TIMEOUT", 12002, "winhttp",
                           "The operation timed out")
ERROR_WINHTTP_NAME_NOT_RESOLVED = _c("ERROR_WINHTTP_NAME_NOT_RESOLVED", 12007, "winhttp",
                                     "The server name or address could not be resolved")
ERROR_WINHTTP_CANNOT_CONNECT = _c("ERROR_WINHTTP_CANNOT_CONNECT", 12029, "winhttp",
                                  "A connection with the server could not be established")
ERROR_WINHTTP_SECURE_FAILURE = _c(
    "ERROR_WINHTTP_SECURE_FAILURE", 12175, "winhttp", "A security error occurred")

# --- Win32 (directory access for ldap:/// CDPs) -----------------------------------------
# The message is verified (a .NET test quoting FormatMessage); that certutil prints exactly
# this code for an unreachable ldap:/// CDP is the lab's inference, hence verified=False.
ERROR_DS_SERVER_DOWN = _c("ERROR_DS_SERVER_DOWN", 8250, "win32",
                          "The server is not operational.", verified=False)
# winerror.h's ERROR_TIMEOUT (1460). The lab gives it to an ldap:// retrieval whose DC answers
# after the per-URL time-out (the ldap_delay fault): wldap32 reports a search time-out as
# LDAP_TIMEOUT, which LdapMapErrorToWin32 turns into ERROR_TIMEOUT; that CryptoAPI then
# shows exactly this code is the lab's inference, hence verified=False.
ERROR_TIMEOUT = _c("ERROR_TIMEOUT", 1460, "win32",
                   "This operation returned because the timeout period expired.",
                   verified=False)

# --- ConfigMgr (reference §6.3; symbolic names only where a log shows them) ---------------
CCM_E_BAD_HTTP_STATUS_CODE = _c("CCM_E_BAD_HTTP_STATUS_CODE", 0x87D0027E, "configmgr",
                                "Bad HTTP status code")
CCM_TRANSIENT_ERROR = _c("0x87D00231", 0x87D00231, "configmgr", "Transient error")
CCM_E_NO_CLIENT_PKI_CERT = _c(
    "CCM_E_NO_CLIENT_PKI_CERT", 0, "configmgr",
    "No client PKI certificate is available (the symbol as CCMHTTP logs it with Code=0; "
    "its numeric value is not documented).", verified=False)
CCM_EMPTY_CERT_STORE = _c("0x87D00280", 0x87D00280, "configmgr", "Empty certificate store")
CCM_NO_MATCHING_CERT = _c("0x87D00281", 0x87D00281, "configmgr",
                          "No certificate matching criteria specified")
CCM_SEVERAL_CERTS = _c("0x87D00282", 0x87D00282, "configmgr",
                       "More than one certificate was found, but 'select first cert' was not set")
CCM_MP_NOT_FOUND = _c("0x87D00269", 0x87D00269, "configmgr",
                      "Required management point not found")

# --- Lab labels: outcomes with no Windows code --------------------------------------------
LAB_CA_PLAN_NAME_LIMIT = _c(
    "LAB_CA_PLAN_NAME_LIMIT", 0, "lab",
    "The public CA's plan allows fewer subject names than the certificate request asked for; "
    "the CA refused to issue the certificate.")
LAB_CA_INTERNAL_NAME = _c(
    "LAB_CA_INTERNAL_NAME", 0, "lab",
    "The public CA refused to issue the certificate: the request names an internal name "
    "(such as a .local name), which public CAs have not issued certificates for since 2015.")
LAB_INSTALL_FROM_INTERNET = _c(
    "LAB_INSTALL_FROM_INTERNET", 0, "lab",
    "ConfigMgr does not support installing a client directly from an internet-based "
    "management point.")
LAB_CLIENT_NOT_INSTALLED = _c("LAB_CLIENT_NOT_INSTALLED", 0, "lab",
                              "The client agent is not installed, so this step cannot run.")
LAB_CLIENT_NOT_REGISTERED = _c(
    "LAB_CLIENT_NOT_REGISTERED", 0, "lab",
    "The client is not registered with the site, so the MP does not accept its messages.")
LAB_NO_INTERNET_MP = _c(
    "LAB_NO_INTERNET_MP", 0, "lab",
    "The client is on the internet and knows no internet-facing management point "
    "(no CCMHOSTNAME and none learned from the site).")


class WinHttpFlag(enum.IntFlag):
    """``WINHTTP_CALLBACK_STATUS_FLAG_*`` bits of a SECURE_FAILURE callback (reference §5.4)."""

    CERT_REV_FAILED = 0x1
    INVALID_CERT = 0x2
    CERT_REVOKED = 0x4
    INVALID_CA = 0x8
    CERT_CN_INVALID = 0x10
    CERT_DATE_INVALID = 0x20
    CERT_WRONG_USAGE = 0x40
    SECURITY_CHANNEL_ERROR = 0x80000000

    @property
    def long_name(self) -> str:
        return f"WINHTTP_CALLBACK_STATUS_FLAG_{self.name}"


def flag_names(flags: int) -> list[str]:
    """The short flag names set in ``flags``, lowest bit first."""
    return [f.name for f in WinHttpFlag if f.value & flags and f.name is not None]


@dataclass(frozen=True)
class IisStatus:
    """An IIS status with its substatus (reference §8.3)."""

    status: int
    substatus: int
    text: str

    @property
    def label(self) -> str:
        """``403.13`` style."""
        return f"{self.status}.{self.substatus}"


IIS_OK = IisStatus(200, 0, "OK")
IIS_SSL_REQUIRED = IisStatus(403, 4, "SSL required")
IIS_CLIENT_CERT_REQUIRED = IisStatus(403, 7, "Client certificate required")
IIS_CLIENT_CERT_REVOKED = IisStatus(403, 13, "Client certificate revoked")
IIS_CLIENT_CERT_UNTRUSTED = IisStatus(403, 16, "Client certificate is untrusted or invalid")
IIS_CLIENT_CERT_EXPIRED = IisStatus(403, 17, "Client certificate has expired or is not yet valid")

IIS_STATUSES = {
    s.label: s
    for s in (IIS_OK, IIS_SSL_REQUIRED, IIS_CLIENT_CERT_REQUIRED, IIS_CLIENT_CERT_REVOKED,
              IIS_CLIENT_CERT_UNTRUSTED, IIS_CLIENT_CERT_EXPIRED)
}


# --- site / client HTTPS state (reference §1.5 and §2.3: bit 0x20 = CRL checking) --------
CRL_BIT = 0x20


def https_state(https_only: bool, check_crl: bool) -> int:
    """The ``Options=`` / ``SSLState`` value the site's settings produce (31/63, 192/224)."""
    base = 0x1F if https_only else 0xC0
    return base | CRL_BIT if check_crl else base


ALL_CODES: tuple[Code, ...] = tuple(
    v for v in globals().values() if isinstance(v, Code)
)


def lookup(identifier: str) -> Code | None:
    """The code an identifier (name, hex, decimal) stands for, if the catalogue has it."""
    key = identifier.strip().upper()
    for code in ALL_CODES:
        if key in code.identifiers():
            return code
    return None


# --- what a scenario step may expect -------------------------------------------------------
# A step's result carries identifiers from this module only (lab.judge.verdict gathers them):
# every spelling of a code (name, hex, signed and unsigned decimal, the WinHTTP/Win32 number),
# the WinHTTP callback flags (short and long names), the MP's IIS status labels (403.13) and
# any HTTP error status (a fault may make the MP answer 400 to 599). ``ok`` and ``fail``
# compare the outcome. Anything else can never be met, so the scenario loader refuses it.
HTTP_ERROR_STATUSES = range(400, 600)


def expect_spellings() -> list[str]:
    """The spellings a did-you-mean offers, as the catalogue writes them (``0x87D00281``)."""
    out = ["ok", "fail"]
    for code in ALL_CODES:
        out.append(code.name)
        if code.numeric and code.hex != code.name:
            out.append(code.hex)
    for flag in WinHttpFlag:
        out += [str(flag.name), flag.long_name]
    out += [label for label, s in IIS_STATUSES.items() if s.status != 200]
    return out


def _expectable() -> frozenset[str]:
    ids = {s.upper() for s in expect_spellings()}
    for code in ALL_CODES:
        ids |= code.identifiers()
    ids |= {str(n) for n in HTTP_ERROR_STATUSES}
    return frozenset(ids)


EXPECTABLE: frozenset[str] = _expectable()
"""Every identifier a step's ``expect`` may name, upper-case (compare with ``.upper()``)."""


def is_expectable(identifier: str) -> bool:
    """True when a step's result can ever carry ``identifier`` (case-insensitive)."""
    return identifier.strip().upper() in EXPECTABLE


def expect_problem(expect: str) -> str | None:
    """Why no step can give ``expect`` (with a did-you-mean), or None when one can."""
    if expect.strip().lower() in ("ok", "fail") or is_expectable(expect):
        return None
    near = close_expectations(expect)
    hint = (f"; did you mean {' or '.join(map(repr, near))}?" if near else
            ": expected 'ok', 'fail', a code name or value (CRYPT_E_REVOCATION_OFFLINE, "
            "0x80092013), a WinHTTP flag, an IIS status (403.13) or a LAB_ label")
    return f"unknown identifier {expect!r}, no step can give it{hint}"


def close_expectations(identifier: str, n: int = 3) -> list[str]:
    """The known spellings nearest to ``identifier``, for a did-you-mean."""
    by_upper = {s.upper(): s for s in expect_spellings()}
    near = difflib.get_close_matches(identifier.strip().upper(), list(by_upper), n=n,
                                     cutoff=0.6)
    return [by_upper[u] for u in near]
