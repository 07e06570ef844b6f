"""Every code, flag and IIS status in ``lab.codes`` traces to the reference.

The reference is ``docs/reference.md`` in the repository. The values are also pinned in a
small table here (as the reference states them), checked against ``lab.codes``, so a changed
value or an unreviewed new code is caught even if the reference is edited along with it.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from labtest import ROOT

from lab import codes
from lab.clock import zone_info
from lab.codes import ALL_CODES, IIS_STATUSES, Code, WinHttpFlag, https_state
from lab.logs.cmtrace import entry_utc, format_bias, format_line, parse_line, windows_bias
from lab.results.logline import LogLine

REFERENCE = ROOT / "docs" / "reference.md"

# ------------------------------------------------------------------------------------------
# The in-repo table: name -> value as the reference states it (reference §5.3 CryptoAPI,
# §5.4 WinHTTP "Dec" and "HRESULT" columns, §6.3 ConfigMgr, §5.4 callback flags, §8.3 IIS).
# ------------------------------------------------------------------------------------------

CRYPTOAPI = {
    "CRYPT_E_NOT_FOUND": "0x80092004",
    "CRYPT_E_REVOKED": "0x80092010",
    "CRYPT_E_NO_REVOCATION_CHECK": "0x80092012",
    "CRYPT_E_REVOCATION_OFFLINE": "0x80092013",
    "TRUST_E_CERT_SIGNATURE": "0x80096004",
    "CERT_E_EXPIRED": "0x800B0101",
    "CERT_E_UNTRUSTEDROOT": "0x800B0109",
    "CERT_E_CHAINING": "0x800B010A",
    "CERT_E_CN_NO_MATCH": "0x800B010F",
    "CERT_E_WRONG_USAGE": "0x800B0110",
}
WINHTTP = {  # name -> (decimal code, HRESULT)
    "ERROR_WINHTTP_TIMEOUT": (12002, "0x80072EE2"),
    "ERROR_WINHTTP_NAME_NOT_RESOLVED": (12007, "0x80072EE7"),
    "ERROR_WINHTTP_CANNOT_CONNECT": (12029, "0x80072EFD"),
    "ERROR_WINHTTP_SECURE_FAILURE": (12175, "0x80072F8F"),
}
CONFIGMGR = {
    "CCM_E_BAD_HTTP_STATUS_CODE": "0x87D0027E",
    "0x87D00231": "0x87D00231",  # Transient error
    "0x87D00269": "0x87D00269",  # Required management point not found
    "0x87D00280": "0x87D00280",  # Empty certificate store
    "0x87D00281": "0x87D00281",  # No certificate matching criteria specified
    "0x87D00282": "0x87D00282",  # More than one certificate ... 'select first cert' ...
}
FLAGS = {
    "CERT_REV_FAILED": 0x1, "INVALID_CERT": 0x2, "CERT_REVOKED": 0x4, "INVALID_CA": 0x8,
    "CERT_CN_INVALID": 0x10, "CERT_DATE_INVALID": 0x20, "CERT_WRONG_USAGE": 0x40,
    "SECURITY_CHANNEL_ERROR": 0x80000000,
}
IIS_LABELS = {"200.0", "403.4", "403.7", "403.13", "403.16", "403.17"}

# Codes the reference does not carry at all, with the reason the lab has them.
NOT_IN_REFERENCE = {
    # winerror.h: ERROR_DS_SERVER_DOWN 8250 (0x203A). The lab marks it verified=False: its use
    # for an unreachable ldap:/// CDP is inferred (docs/scenario-format.md, "[network]").
    "ERROR_DS_SERVER_DOWN": (8250, "0x8007203A"),
    # winerror.h: ERROR_TIMEOUT 1460 (0x5B4), "This operation returned because the timeout
    # period expired." The lab gives it to an LDAP CDP slower than the retrieval time-out (the
    # ldap_delay fault); verified=False: that Windows reports exactly this code is inferred.
    "ERROR_TIMEOUT": (1460, "0x800705B4"),
}
# Known only by their symbol: value 0, never printed as a number.
SYMBOL_ONLY = {
    # reference §6.3: "known only as the symbol CCMHTTP logs with `Code=0` ... Its numeric
    # ConfigMgr value is not verified. [I]"
    "CCM_E_NO_CLIENT_PKI_CERT": "configmgr",
}

# Messages that are not in the reference, with the reason. Everything else must be quoted
# verbatim on a line of the reference that also names the code.
MESSAGE_EXCEPTIONS = {
    "ERROR_WINHTTP_TIMEOUT": "reference §5.4 lists WinHTTP names and numbers, no message texts",
    "ERROR_WINHTTP_NAME_NOT_RESOLVED": "reference §5.4 lists WinHTTP names and numbers only",
    "ERROR_WINHTTP_CANNOT_CONNECT": "reference §5.4 lists WinHTTP names and numbers only",
    "ERROR_DS_SERVER_DOWN": "not in the reference at all (see NOT_IN_REFERENCE)",
    "ERROR_TIMEOUT": "not in the reference at all (see NOT_IN_REFERENCE)",
    "CCM_E_NO_CLIENT_PKI_CERT": "the reference has the symbol only; the text is the lab's "
                                "description of it",
}


def _lab_codes() -> dict[str, Code]:
    return {c.name: c for c in ALL_CODES}


def _reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def reference() -> str:
    return _reference_text()


def lines_naming(text: str, word: str) -> list[str]:
    """The reference's lines that contain ``word`` as a whole token."""
    pattern = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", re.IGNORECASE)
    return [line for line in text.splitlines() if pattern.search(line)]


def has_token(line: str, token: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(token)}(?![A-Za-z0-9_])", line,
                     re.IGNORECASE) is not None


# ------------------------------------------------------------------------------------------
# always: lab.codes against the in-repo table
# ------------------------------------------------------------------------------------------


def test_every_numeric_code_is_in_the_table_with_its_value() -> None:
    lab = _lab_codes()
    numeric = {n for n, c in lab.items() if c.numeric}
    assert numeric == set(CRYPTOAPI) | set(WINHTTP) | set(CONFIGMGR) | set(NOT_IN_REFERENCE)
    for name, hex_value in CRYPTOAPI.items():
        code = lab[name]
        assert (code.kind, code.hex, code.value) == ("cryptoapi", hex_value, int(hex_value, 16))
    for name, (decimal, hresult) in WINHTTP.items():
        code = lab[name]
        assert (code.kind, code.value, code.hex) == ("winhttp", decimal, hresult)
        assert code.hresult == 0x80070000 | decimal
    for name, hex_value in CONFIGMGR.items():
        code = lab[name]
        assert (code.kind, code.hex) == ("configmgr", hex_value)
    for name, (decimal, hresult) in NOT_IN_REFERENCE.items():
        code = lab[name]
        assert (code.kind, code.value, code.hex, code.verified) == ("win32", decimal, hresult,
                                                                     False)


def test_signed_and_identifier_spellings_follow_the_value() -> None:
    # reference §5.3: "CRYPT_E_REVOCATION_OFFLINE = -2146885613", "CERT_E_UNTRUSTEDROOT =
    # -2146762487, unsigned 2148204809"; §6.3: 0x87D00231 "-2016411087"
    lab = _lab_codes()
    assert lab["CRYPT_E_REVOCATION_OFFLINE"].signed == -2146885613
    assert lab["CERT_E_UNTRUSTEDROOT"].signed == -2146762487
    assert lab["CERT_E_UNTRUSTEDROOT"].hresult == 2148204809
    assert lab["0x87D00231"].signed == -2016411087
    assert lab["CCM_E_BAD_HTTP_STATUS_CODE"].signed == -2016411010
    assert lab["ERROR_WINHTTP_SECURE_FAILURE"].identifiers() == {
        "ERROR_WINHTTP_SECURE_FAILURE", "0X80072F8F", "12175", "-2147012721", "2147954575"}
    assert codes.lookup("0x80092013") is lab["CRYPT_E_REVOCATION_OFFLINE"]
    assert codes.lookup("12175") is lab["ERROR_WINHTTP_SECURE_FAILURE"]
    assert codes.lookup("0x80092099") is None


def test_codes_without_a_number_are_lab_labels_or_listed() -> None:
    symbol_only = {n: c for n, c in _lab_codes().items() if not c.numeric}
    labels = {n for n in symbol_only if n.startswith("LAB_")}
    assert labels >= {"LAB_CA_PLAN_NAME_LIMIT", "LAB_INSTALL_FROM_INTERNET",
                      "LAB_NO_INTERNET_MP", "LAB_CLIENT_NOT_INSTALLED",
                      "LAB_CLIENT_NOT_REGISTERED"}
    for name in labels:
        code = symbol_only[name]
        assert (code.kind, code.value, code.identifiers()) == ("lab", 0, {name})
    assert {n: c.kind for n, c in symbol_only.items() if n not in labels} == SYMBOL_ONLY
    assert symbol_only["CCM_E_NO_CLIENT_PKI_CERT"].identifiers() == {"CCM_E_NO_CLIENT_PKI_CERT"}
    # and no numeric code is kind "lab" or named like one
    assert [c.name for c in ALL_CODES if c.numeric and (c.kind == "lab"
                                                        or c.name.startswith("LAB_"))] == []


def test_winhttp_flags_match_the_table() -> None:
    assert {f.name: f.value for f in WinHttpFlag} == FLAGS
    assert WinHttpFlag.CERT_REV_FAILED.long_name == "WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED"
    # reference §5.4: several flags at once, 0x9 = CERT_REV_FAILED | INVALID_CA
    assert codes.flag_names(0x9) == ["CERT_REV_FAILED", "INVALID_CA"]
    assert codes.flag_names(0) == []


def test_iis_statuses_match_the_table() -> None:
    assert set(IIS_STATUSES) == IIS_LABELS
    assert {s.label: (s.status, s.substatus) for s in IIS_STATUSES.values()} == {
        label: tuple(int(p) for p in label.split(".")) for label in IIS_LABELS}


@pytest.mark.parametrize(("https_only", "check_crl", "state"), [
    (True, False, 31), (True, True, 63), (False, False, 192), (False, True, 224)])
def test_https_state_as_in_reference_1_5(https_only: bool, check_crl: bool, state: int) -> None:
    assert https_state(https_only, check_crl) == state
    assert bool(state & codes.CRL_BIT) is check_crl  # bit 0x20 = CRL checking
    assert codes.CRL_BIT == 0x20


JST = dt.timezone(dt.timedelta(hours=9))
WHEN = dt.datetime(2026, 1, 5, 23, 59, 59, 123000, tzinfo=dt.UTC)


@pytest.mark.parametrize(("tz", "bias", "text", "local"), [
    (JST, -540, "-540", "08:59:59.123"),
    (dt.UTC, 0, "+000", "23:59:59.123"),
])
def test_cmtrace_bias_is_the_windows_bias(tz: dt.tzinfo, bias: int, text: str,
                                          local: str) -> None:
    # reference §7.2: "JST (UTC+9) is written -540, UTC is +000" (UTC = local time + bias)
    assert windows_bias(WHEN.astimezone(tz)) == bias
    assert format_bias(bias) == text
    entry = parse_line(format_line(LogLine("ccmsetup.log", "ccmsetup", "x", 1, WHEN, 1), tz))
    assert (entry["time"], entry["bias"]) == (local, text)
    assert entry_utc(entry) == WHEN


def test_cmtrace_bias_for_a_named_zone() -> None:
    try:
        tokyo = zone_info("Asia/Tokyo")
    except ValueError:
        pytest.skip("no time zone database on this machine")
    assert format_bias(windows_bias(WHEN.astimezone(tokyo))) == "-540"
    assert format_bias(windows_bias(WHEN.astimezone(zone_info("UTC")))) == "+000"


# ------------------------------------------------------------------------------------------
# with the reference: names, values and texts as it states them
# ------------------------------------------------------------------------------------------

REFERENCED = sorted(n for n, c in _lab_codes().items() if n not in NOT_IN_REFERENCE
                    and c.kind != "lab")


@pytest.mark.parametrize("name", REFERENCED)
def test_code_name_and_value_stand_together_in_the_reference(reference: str, name: str) -> None:
    code = _lab_codes()[name]
    naming = lines_naming(reference, name)
    assert naming != [], f"{name} is not in the reference"
    if not code.numeric:
        return
    # the value on the same line (a table row is one line) as the name
    together = [line for line in naming if has_token(line, code.hex)]
    if code.kind == "winhttp":
        together = [line for line in together if has_token(line, str(code.value))]
    assert together != [], f"{name}: no reference line names it with {code.hex}"


@pytest.mark.parametrize("name", REFERENCED)
def test_code_message_is_quoted_from_the_reference(reference: str, name: str) -> None:
    code = _lab_codes()[name]
    if name in MESSAGE_EXCEPTIONS:
        # a listed exception must still be one: if the reference gains the text, drop it
        assert code.message not in reference, f"{name}: remove it from MESSAGE_EXCEPTIONS"
        return
    quoted = [line for line in lines_naming(reference, name) if code.message in line]
    assert quoted != [], f"{name}: {code.message!r} is not on a reference line naming it"


def test_lab_labels_and_the_unlisted_win32_code_are_not_in_the_reference(
        reference: str) -> None:
    lab = _lab_codes()
    labels = [n for n, c in lab.items() if c.kind == "lab"]
    assert len(labels) >= 5
    assert [n for n in labels if lines_naming(reference, n)] == []
    for name, (_decimal, hresult) in NOT_IN_REFERENCE.items():
        assert lines_naming(reference, name) == [], f"{name} is in the reference now"
        assert lines_naming(reference, hresult) == []


def test_the_in_repo_table_agrees_with_the_reference(reference: str) -> None:
    for name, hex_value in {**CRYPTOAPI, **CONFIGMGR}.items():
        assert any(has_token(line, hex_value) for line in lines_naming(reference, name)), name
    for name, (decimal, hresult) in WINHTTP.items():
        rows = [line for line in lines_naming(reference, name) if line.startswith("|")]
        assert any(has_token(r, str(decimal)) and has_token(r, hresult) for r in rows), name


@pytest.mark.parametrize("flag", list(WinHttpFlag), ids=lambda f: f.name)
def test_flag_name_and_value_stand_together_in_the_reference(reference: str,
                                                            flag: WinHttpFlag) -> None:
    # reference §5.4: "CERT_REV_FAILED 0x1, INVALID_CERT 0x2, ... SECURITY_CHANNEL_ERROR
    # 0x80000000"
    assert re.search(rf"\b{flag.name} 0x{flag.value:X}\b", reference, re.IGNORECASE), flag.name


@pytest.mark.parametrize("label", sorted(IIS_STATUSES))
def test_iis_status_text_is_quoted_from_the_reference(reference: str, label: str) -> None:
    status = IIS_STATUSES[label]
    if status.substatus == 0:
        # the reference gives 200 without a substatus: "status code 200, text: OK"
        assert f"status code {status.status}, text: {status.text}" in reference
    else:
        # reference §8.3: "403.13 Client certificate revoked", "403.4 SSL required", ...
        assert f"{label} {status.text}" in reference


def test_https_states_and_cmtrace_bias_are_the_reference_s(reference: str) -> None:
    rows = {int(m.group(1)): m.group(0) for m in
            re.finditer(r"^\| (\d+) \(0x[0-9A-F]+\) \|[^\n]*$", reference, re.MULTILINE)}
    assert "HTTPS only" in rows[31] and "**no** CRL" in rows[31]
    assert "HTTPS only" in rows[63] and "CRL" in rows[63]
    assert "HTTPS or HTTP" in rows[192] and "no CRL" in rows[192]
    assert "HTTPS or HTTP + CRL" in rows[224]
    assert {https_state(o, c) for o in (True, False) for c in (True, False)} == {31, 63, 192,
                                                                             224}
    # reference §7.2: "Therefore JST (UTC+9) is written `-540`, UTC is `+000`" (bold or not)
    assert "JST (UTC+9) is written `-540`, UTC is `+000`" in reference.replace("**", "")


def test_the_checks_reject_a_wrong_value_or_text(reference: str) -> None:
    # the failing twins of the checks above: a neighbouring row's value or text is not taken
    offline = lines_naming(reference, "CRYPT_E_REVOCATION_OFFLINE")
    assert any(has_token(line, "0x80092013") for line in offline)
    assert not any(has_token(line, "0x80092014") for line in offline)
    assert not any(has_token(line, "0x8009201") for line in offline)  # no prefix match
    revoked_text = _lab_codes()["CRYPT_E_REVOKED"].message
    assert not any(revoked_text in line for line in offline)
    assert lines_naming(reference, "CRYPT_E_REVOKE") == []  # whole tokens only
    assert "403.13 Client certificate has expired" not in reference

