"""``ibcm-lab serve``: real curl against the lab's servers, with and without the client
certificate, and a clean stop on Ctrl-C."""

from __future__ import annotations

import base64
import http.client
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.codes import (
    IIS_CLIENT_CERT_REQUIRED,
    IIS_CLIENT_CERT_REVOKED,
    IIS_CLIENT_CERT_UNTRUSTED,
    IisStatus,
)

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "seed4-internet-client-ldap-cdp-crl-on.toml"
CURL = shutil.which("curl")
LDAPSEARCH = shutil.which("ldapsearch")
OPENSSL = shutil.which("openssl")
INTRA, INTERNET = "IBCM-Intra.contoso.local", "IBCM-Internet.public.com"
# A hosts-file entry: IP, canonical name, aliases, and a # comment.
HOSTS_ENTRY = re.compile(r"^(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]+)"
                         r"(?P<names>(?:[ \t]+[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)+)"
                         r"[ \t]+#.*$")


def start(certs: Path, *extra: str, scenario: Path = SCENARIO
          ) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", str(scenario), "--certs", str(certs),
         "--for-seconds", "60", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120  # a hang guard
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("# Press Ctrl-C"):
            return proc, lines
    proc.kill()
    raise AssertionError("serve did not get ready:\n" + "\n".join(lines))


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a hang guard
    return proc.returncode, out, err


def command(lines: list[str], prefix: str) -> list[str]:
    return shlex.split(next(line for line in lines if line.startswith(prefix)))


def block(lines: list[str], host: str, port: int) -> list[str]:
    """The lines under ``# host:port -> ...``, up to the blank line that ends the block."""
    head = next(i for i, line in enumerate(lines)
                if line.startswith(f"# {host}:{port} -> "))
    end = lines.index("", head)
    return lines[head + 1:end]


def after(lines: list[str], label: str, nth: int = 0) -> str:
    """The line after the ``#`` line ``label`` (``nth``: the line after that one, ...)."""
    return lines[lines.index(label) + 1 + nth]


def run(line: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The printed line pasted whole into bash (stdin empty, as ``</dev/null``)."""
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def client_label(lines: list[str], client: str) -> str:
    return next(line for line in lines if line.startswith(f"# client {client} (certificate "))


def assert_iis(got: subprocess.CompletedProcess[str], status: IisStatus) -> None:
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"HTTP/1.1 {status.status} Forbidden")
    assert f"<h2>{status.text}</h2>" in got.stdout


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_gets_mplist_with_the_client_certificate_and_403_without(certs_dir: Path) -> None:
    proc, lines = start(certs_dir)
    try:
        text = "\n".join(lines)
        assert "Listening on 127.0.0.1." in text
        assert "# IBCM-Intra.contoso.local:443 -> 127.0.0.1:" in text
        intra = block(lines, INTRA, 443)
        assert after(intra, "# hosts file entry:").startswith(
            "127.0.0.1 IBCM-Intra.contoso.local  # ")
        with_cert = shlex.split(after(intra, client_label(intra, "PC01")))
        assert "--cert" in with_cert and "--key" in with_cert and "--cacert" in with_cert
        got = subprocess.run([*with_cert, "-sS"], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith("HTTP/1.1 200 OK")
        assert "<MPList><MP Name=\"IBCM-INTRA.CONTOSO.LOCAL\"" in got.stdout
        assert '<Property Name="SSLState" Value="63"/>' in got.stdout
        # the twin: the same request without the client certificate is refused by "IIS"
        without = after(intra, "# without a client certificate (IIS answers 403.7):")
        assert "--cert" not in without
        assert_iis(run(without), IIS_CLIENT_CERT_REQUIRED)
        # the CRL is where the certificate says, byte for byte a CRL
        crl_cmd = command(lines, "curl -o Contoso-CA.crl")
        fetched = subprocess.run([*crl_cmd[:1], *crl_cmd[3:], "-sS"], capture_output=True,
                                 timeout=60)
        assert fetched.returncode == 0 and fetched.stdout[:1] == b"\x30"  # DER SEQUENCE
        # the key is never served: it is not under any URL the CDP server knows
        key = next(line.split(": ", 1)[1] for line in lines
                   if line.startswith("# Client key"))
        assert Path(key).stat().st_mode & 0o777 == 0o600
    finally:
        code, out, err = stop(proc)
    assert code == 130 and out.strip().endswith("Stopped.")
    assert "Traceback" not in err


def test_another_address_is_warned_about(certs_dir: Path) -> None:
    proc, lines = start(certs_dir, "--host", "127.0.0.2")
    code, _out, err = stop(proc)
    assert code == 130
    assert "Listening on 127.0.0.2." in "\n".join(lines)
    assert "warning: binding 127.0.0.2" in err
    # the twin: the default address gives no warning
    proc, _ = start(certs_dir)
    code, _out, err = stop(proc)
    assert code == 130 and "warning" not in err


def test_serve_bad_input(tmp_path: Path, certs_dir: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "nope.toml"), "--certs", str(certs_dir)]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err
    assert main(["serve", str(SCENARIO), "--for-seconds", "0", "--certs", str(certs_dir)]) == 2
    assert "--for-seconds expects a positive number" in capsys.readouterr().err


def test_for_seconds_stops_by_itself(certs_dir: Path) -> None:
    env = dict(os.environ)
    # stopping by itself is the outcome: the timeout only guards against a serve that never stops
    done = subprocess.run(
        [sys.executable, "-m", "lab", "serve", str(SCENARIO), "--certs", str(certs_dir),
         "--for-seconds", "0.5"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("Stopped.")


@pytest.mark.skipif(LDAPSEARCH is None, reason="ldapsearch (OpenLDAP's client: apt-get install "
                                               "ldap-utils) is not installed")
def test_ldapsearch_reads_the_same_crl_as_the_http_cdp(certs_dir: Path, tmp_path: Path) -> None:
    proc, lines = start(certs_dir)
    try:
        text = "\n".join(lines)
        assert re.search(r"^# DC01\.contoso\.local:389 -> 127\.0\.0\.1:\d+ ", text, re.M)
        # the printed command, run as printed
        search = next(shlex.split(line) for line in lines
                      if line.startswith("ldapsearch -x ") and "CN=CDP," in line)
        assert search[-1] == "certificateRevocationList" and "-s" in search
        got = subprocess.run(search, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        (value,) = [line.split(":: ", 1)[1] for line in got.stdout.splitlines()
                    if line.startswith("certificateRevocationList:: ")]
        from_ldap = base64.b64decode(value)
        # the HTTP CDP's bytes, from the port serve printed for ca01.contoso.local:80
        port = int(re.search(r"^# ca01\.contoso\.local:80 -> 127\.0\.0\.1:(\d+)$", text,
                             re.M).group(1))  # type: ignore[union-attr]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/CertEnroll/Contoso-CA.crl", headers={"Host": "ca01.contoso.local"})
        reply = conn.getresponse()
        from_http = reply.read()
        conn.close()
        assert reply.status == 200 and from_http[:1] == b"\x30"
        assert from_ldap == from_http
        # the printed pipeline (ldapsearch | sed | base64 -d, then curl | cmp) says so too
        if CURL is not None:
            pipeline = next(line for i, line in enumerate(lines) if "CN=CDP," in line
                            and lines[i - 1] == "# the same bytes as over HTTP:")
            done = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True,
                                  timeout=60, cwd=tmp_path)
            assert (done.returncode, done.stdout) == (0, "identical\n"), done.stderr
            assert (tmp_path / "Contoso-CA.ldap.crl").read_bytes() == from_http
        # the twin: a DN the directory does not hold is noSuchObject (ldapsearch exits 32)
        missing = [a.replace("CN=Contoso-CA,", "CN=Nobody,") for a in search]
        refused = subprocess.run(missing, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 32 and "No such object" in refused.stderr + refused.stdout
    finally:
        code, _out, err = stop(proc)
    assert code == 130 and "Traceback" not in err


def guide_lines(lines: list[str]) -> list[str]:
    """The guide's lines that are not ``#`` comments and not blank."""
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_every_printed_line_pastes_into_bash_and_hosts_entries_parse(certs_dir: Path) -> None:
    scenario = ROOT / "scenarios" / "client-cert-revoked.toml"
    proc, lines = start(certs_dir, scenario=scenario)
    code, _out, err = stop(proc)
    assert code == 130 and "Traceback" not in err
    # labels and notes are # lines; what is left is commands and hosts-file entries
    entries = [lines[i + 1] for i, label in enumerate(lines) if label == "# hosts file entry:"]
    assert entries and set(entries) <= set(guide_lines(lines))
    for line in guide_lines(lines):
        syntax = subprocess.run(["bash", "-n", "-c", line], capture_output=True, text=True,
                                timeout=60)
        assert (syntax.returncode, syntax.stderr) == (0, ""), line
        if line not in entries:
            assert line.split()[0] in {"curl", "openssl", "ldapsearch"}, line
    # the hosts-file entries are hosts entries, one per host and port the lab plays
    hosted = set()
    for entry in entries:
        match = HOSTS_ENTRY.match(entry)
        assert match is not None, entry
        assert match["ip"] == "127.0.0.1"
        hosted.add(match["names"].split()[0])
    assert {INTRA, INTERNET, "ca01.contoso.local"} <= hosted
    # the twin: a hosts line as it was printed before (a note in parentheses, no #) is none
    assert HOSTS_ENTRY.match("127.0.0.1 IBCM-Intra.contoso.local   (the port still has to "
                             "be 443)") is None
    bad = subprocess.run(["bash", "-n", "-c", "ibcm-lab serve: x (a title)"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "syntax error" in bad.stderr


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize(("scenario", "refused"), [
    ("client-cert-revoked.toml", IIS_CLIENT_CERT_REVOKED),
    ("client-cert-untrusted-issuer.toml", IIS_CLIENT_CERT_UNTRUSTED),
])
def test_every_client_gets_its_commands_and_the_status_it_deserves(
        certs_dir: Path, scenario: str, refused: IisStatus) -> None:
    proc, lines = start(certs_dir, scenario=ROOT / "scenarios" / scenario)
    try:
        for host in (INTRA, INTERNET):
            here = block(lines, host, 443)
            labels = [line for line in here if line.startswith("# client ")]
            assert [label.split()[2] for label in labels] == ["PC01", "PC02"]
            # PC01's certificate is the failing one: revoked / from an untrusted issuer
            failing = after(here, client_label(here, "PC01"))
            assert_iis(run(failing), refused)
            # its twin, PC02's good certificate, gets the MP list
            good = run(after(here, client_label(here, "PC02")))
            assert good.returncode == 0, good.stderr
            assert good.stdout.startswith("HTTP/1.1 200 OK")
            assert f'<MPList><MP Name="{INTRA.upper()}"' in good.stdout
            # each client's own certificate and key, not the first client's for all
            pc01, pc02 = shlex.split(failing), shlex.split(good.args[2])
            assert pc01[pc01.index("--cert") + 1] != pc02[pc02.index("--cert") + 1]
            assert pc01[pc01.index("--key") + 1] != pc02[pc02.index("--key") + 1]
    finally:
        code, _out, err = stop(proc)
    assert code == 130 and "Traceback" not in err


@pytest.mark.skipif(OPENSSL is None or CURL is None, reason="openssl or curl is not installed")
def test_openssl_checks_the_name_the_mp_certificate_carries(certs_dir: Path) -> None:
    # the MP's certificate names IBCM-Intra.contoso.local only
    scenario = ROOT / "scenarios" / "seed2-mp-cert-intranet-name-only.toml"
    proc, lines = start(certs_dir, scenario=scenario)
    try:
        internet = block(lines, INTERNET, 443)
        line = after(internet, client_label(internet, "PC01"), 1)
        assert line.startswith("openssl s_client ")
        assert f"-servername {INTERNET} -verify_hostname {INTERNET} " in line
        mismatch = run(line)
        assert "Verify return code: 62 (hostname mismatch)" in mismatch.stdout
        assert mismatch.returncode != 0  # -verify_return_error: the handshake is refused
        # curl refuses the name as well (exit 60: peer certificate cannot be authenticated)
        assert run(after(internet, client_label(internet, "PC01"))).returncode == 60
        # the twin: the intranet name is on the certificate
        intra = block(lines, INTRA, 443)
        line = after(intra, client_label(intra, "PC01"), 1)
        assert f"-verify_hostname {INTRA} " in line
        matched = run(line)
        assert "Verify return code: 0 (ok)" in matched.stdout, matched.stdout + matched.stderr
        assert matched.returncode == 0, matched.stderr
    finally:
        code, _out, err = stop(proc)
    assert code == 130 and "Traceback" not in err
