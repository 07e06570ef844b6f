"""The text report (lab/report/text.py): the plain format scripts parse, and the rich one a
terminal gets.

Plain whenever standard output is not a terminal, ``NO_COLOR`` is set or ``TERM`` is ``dumb``
(no escape code at all); styled with colour on a terminal, which a ``rich`` console with
``force_terminal=True`` stands in for.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from labtest import SCENARIOS, plain_console, terminal

from lab.report.certutil import render_trace
from lab.report.text import (
    evidence_lines,
    print_text,
    render_text,
    status,
    styled,
    terminal_console,
)
from lab.results.runs import RunResult
from lab.run import run_paths

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CRL_ON = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
NO_HTTPS = SCENARIOS / "seed3-smsmp-without-https.toml"
CCMHTTP = ("CcmMessaging.log: [CCMHTTP] ERROR: URL=https://IBCM-Internet.public.com/ccm_system/"
           "request, Port=443, Options=63, Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE")
LDAP_START = "ldap:///CN=Contoso-CA,CN=ca01,CN=CDP,CN=Public%20Key%20Services,"
HTTP_CDP = "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"


@pytest.fixture(autouse=True)
def _neutral_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's or the CI's colour settings do not leak into these tests."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS",
                 "LINES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


@pytest.fixture(scope="module")
def run(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A scenario that passes with a failing step (CRL offline) and one with a MISS."""
    folder = tmp_path_factory.mktemp("report-text")
    text = NO_HTTPS.read_text(encoding="utf-8")
    assert text.count('expect = "403.4"') == 1
    wrong = folder / "wrong-expect.toml"
    wrong.write_text(text.replace('expect = "403.4"', 'expect = "ok"'), encoding="utf-8")
    return run_paths([CRL_ON, wrong], certs=certs_dir)


# -- plain -----------------------------------------------------------------------------------


def test_plain_report_has_the_documented_lines(run: RunResult) -> None:
    out = render_text(run)
    assert not ANSI.search(out) and "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == ("== seed4-internet-client-ldap-cdp-crl-on: " + run.scenarios[0]
                        .scenario.info.title + " [seed §4]  -> PASSED")
    # Each step line ends with the step's time after the scenario's start (lab time).
    assert ("    PASS  2. inventory @ internet  FAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013  "
            "(expected CRYPT_E_REVOCATION_OFFLINE)  [+00:00:08]") in lines
    assert ("        winhttp  ERROR_WINHTTP_SECURE_FAILURE (12175), flags CERT_REV_FAILED (0x1)"
            in lines)
    assert any(line.startswith("        crl      failed        " + LDAP_START)
               and line.endswith(" [15 s] 0x8007203A ERROR_DS_SERVER_DOWN") for line in lines)
    assert (f"        crl      failed        {HTTP_CDP} [15 s] 0x80072EE7 "
            "ERROR_WINHTTP_NAME_NOT_RESOLVED") in lines
    assert f"        log      {CCMHTTP}" in lines
    assert ("    MISS  2. register @ intranet  FAIL CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E "
            "HTTP 403.4  (expected ok)  [+00:00:08]") in lines
    assert lines[-1].startswith("1/2 scenarios passed, 3/4 expectations met, in ")


def test_evidence_lines_keep_their_columns(run: RunResult) -> None:
    step = run.scenarios[0].steps[-1]
    assert evidence_lines(step, indent=4)[0] == (
        "    winhttp  ERROR_WINHTTP_SECURE_FAILURE (12175), flags CERT_REV_FAILED (0x1)")
    assert f"    log      {CCMHTTP}" in evidence_lines(step, indent=4)


def test_not_a_terminal_prints_the_plain_report(run: RunResult) -> None:
    console, buf = plain_console(100)
    assert not styled(console)
    print_text(run, console=console)
    assert buf.getvalue() == render_text(run)
    console, buf = plain_console(100)
    print_text(run, True, trace=True, console=console)
    assert buf.getvalue() == render_text(run, True) + "\n" + render_trace(run)
    assert "\x1b" not in buf.getvalue()


def test_default_console_is_plain_when_stdout_is_captured(
        run: RunResult, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # FORCE_COLOR is not honoured: a redirected report stays parseable.
    monkeypatch.setenv("FORCE_COLOR", "1")
    print_text(run)
    out, err = capsys.readouterr()
    assert (out, err) == (render_text(run), "")
    assert not styled(terminal_console())


@pytest.mark.parametrize(("name", "value"), [("NO_COLOR", "1"), ("TERM", "dumb")])
def test_no_color_or_dumb_terminal_is_plain_even_on_a_terminal(
        run: RunResult, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    console, buf = terminal(100)
    assert console.is_terminal and not styled(console)
    print_text(run, trace=True, console=console)
    assert buf.getvalue() == render_text(run) + "\n" + render_trace(run)
    assert "\x1b" not in buf.getvalue()


def test_empty_no_color_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "")  # no-color.org: present *and* not empty
    assert styled(terminal(100)[0])


# -- a terminal ------------------------------------------------------------------------------


def test_terminal_output_is_coloured(run: RunResult) -> None:
    console, buf = terminal(100)
    assert styled(console)
    print_text(run, console=console)
    raw = buf.getvalue()
    assert ANSI.search(raw)
    assert "\x1b[1;37;41m MISS \x1b[0m" in raw  # white on red
    assert "\x1b[1;32m PASS \x1b[0m" in raw  # green
    assert "\x1b[1;31mFAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013\x1b[0m" in raw
    assert "\x1b[32mok\x1b[0m" in raw
    assert "\x1b[1;37;41m FAILED \x1b[0m" in raw and "\x1b[1;37;42m PASSED \x1b[0m" in raw
    text = ANSI.sub("", raw)
    lines = text.splitlines()
    assert lines[0].startswith(" PASSED  seed4-internet-client-ldap-cdp-crl-on ─")
    title = run.scenarios[0].scenario.info.title
    assert " ".join(line.strip() for line in lines[1:3]) == f"{title} [seed §4]"
    assert ("   PASS  2. inventory @ internet  FAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013  "
            "(expected CRYPT_E_REVOCATION_OFFLINE)  [+00:00:08]") in lines
    assert ("   MISS  2. register @ intranet  FAIL CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E "
            "HTTP 403.4  (expected ok)  [+00:00:08]") in lines
    # The CCMHTTP line stays whole (the terminal folds it), labels in a column.
    assert f"        log      {CCMHTTP}" in lines
    assert any(line.startswith("        why      PC01 (domain-joined, on the internet)")
               for line in lines)
    assert any(line.startswith("        fix      Write SMSMP=https://") for line in lines)
    assert lines[-1].startswith("1/2 scenarios passed, 3/4 expectations met, in ")
    assert all(line == line.rstrip() for line in lines)


def test_terminal_wraps_explanations_with_a_hanging_indent(run: RunResult) -> None:
    console, buf = terminal(width=72)
    print_text(run, console=console)
    lines = ANSI.sub("", buf.getvalue()).splitlines()
    why = next(i for i, line in enumerate(lines) if line.startswith("        why      PC01"))
    assert len(lines[why]) <= 72
    assert lines[why + 1].startswith(" " * 17) and lines[why + 1][17] != " "
    for line in lines:  # only step lines, log lines and long words (URLs) go past the width
        if len(line) > 72 and not re.match(r"   (PASS|MISS|auto)  |        (log|crl)  ", line):
            assert any(len(word) > 72 - 17 for word in line.split()), line


def test_terminal_trace_keeps_certutil_lines(run: RunResult) -> None:
    console, buf = terminal(100)
    print_text(run, trace=True, console=console)
    raw = buf.getvalue()
    assert '\x1b[31m  Failed "CDP" Time: 15\x1b[0m\n' in raw
    text = ANSI.sub("", raw)
    assert render_trace(run) in text


def test_status_spinner_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    console, buf = plain_console(100)
    with status("Running", console):
        pass
    assert buf.getvalue() == ""
    console, buf = terminal(100)
    with status("Running the scenarios", console):
        pass
    assert "Running the scenarios" in ANSI.sub("", buf.getvalue())
