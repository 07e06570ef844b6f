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

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "seed4-internet-client-ldap-cdp-crl-on.toml"
CURL = shutil.which("curl")
LDAPSEARCH = shutil.which("ldapsearch")


def start(certs: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", str(SCENARIO), "--certs", str(certs),
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
        if line.startswith("Press Ctrl-C"):
            return proc, lines
    proc.kill()
    raise AssertionError("serve did not get ready:\n" + "\n".join(lines))


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)  # a hang guard
    return proc.returncode, out, err


def command(lines: list[str], prefix: str) -> list[str]:
    found = next(line.strip() for line in lines if line.strip().startswith(prefix))
    if "): " in found:
        found = found.split("): ", 1)[1]
    return shlex.split(found.split("   (")[0])


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl_gets_mplist_with_the_client_certificate_and_403_without(certs_dir: Path) -> None:
    proc, lines = start(certs_dir)
    try:
        text = "\n".join(lines)
        assert "Listening on 127.0.0.1." in text
        assert "IBCM-Intra.contoso.local:443 -> 127.0.0.1:" in text
        assert "hosts file: 127.0.0.1 IBCM-Intra.contoso.local" in text
        with_cert = command(lines, "curl --resolve IBCM-Intra.contoso.local:")
        assert "--cert" in with_cert and "--key" in with_cert and "--cacert" in with_cert
        got = subprocess.run([*with_cert, "-sS"], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith("<MPList><MP Name=\"IBCM-INTRA.CONTOSO.LOCAL\"")
        assert '<Property Name="SSLState" Value="63"/>' in got.stdout
        # the twin: the same request without the client certificate is refused by "IIS"
        without = [a for a in with_cert]
        i = without.index("--cert")
        del without[i:i + 4]  # --cert FILE --key FILE
        refused = subprocess.run([*without, "-sS", "-i"], capture_output=True, text=True,
                                 timeout=60)
        assert refused.stdout.startswith("HTTP/1.1 403 Forbidden")
        assert "Client certificate required" in refused.stdout
        # the CRL is where the certificate says, byte for byte a CRL
        crl_cmd = command(lines, "curl -o Contoso-CA.crl")
        fetched = subprocess.run([*crl_cmd[:1], *crl_cmd[3:], "-sS"], capture_output=True,
                                 timeout=60)
        assert fetched.returncode == 0 and fetched.stdout[:1] == b"\x30"  # DER SEQUENCE
        # the key is never served: it is not under any URL the CDP server knows
        key = next(line.split(": ", 1)[1] for line in lines if line.startswith("Client key"))
        assert Path(key).stat().st_mode & 0o777 == 0o600
    finally:
        code, out, err = stop(proc)
    assert code == 0 and out.strip().endswith("Stopped.")
    assert "Traceback" not in err


def test_another_address_is_warned_about(certs_dir: Path) -> None:
    proc, lines = start(certs_dir, "--host", "127.0.0.2")
    code, _out, err = stop(proc)
    assert code == 0
    assert "Listening on 127.0.0.2." in "\n".join(lines)
    assert "warning: binding 127.0.0.2" in err
    # the twin: the default address gives no warning
    proc, _ = start(certs_dir)
    code, _out, err = stop(proc)
    assert code == 0 and "warning" not in err


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
        assert re.search(r"^DC01\.contoso\.local:389 -> 127\.0\.0\.1:\d+ ", text, re.M)
        # the printed command, run as printed
        search = next(shlex.split(line.strip()) for line in lines
                      if line.strip().startswith("ldapsearch -x ") and "CN=CDP," in line)
        assert search[-1] == "certificateRevocationList" and "-s" in search
        got = subprocess.run(search, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        (value,) = [line.split(":: ", 1)[1] for line in got.stdout.splitlines()
                    if line.startswith("certificateRevocationList:: ")]
        from_ldap = base64.b64decode(value)
        # the HTTP CDP's bytes, from the port serve printed for ca01.contoso.local:80
        port = int(re.search(r"^ca01\.contoso\.local:80 -> 127\.0\.0\.1:(\d+)$", text,
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
            pipeline = next(line.split(": ", 1)[1] for line in lines
                            if line.startswith("  the same bytes as over HTTP: ")
                            and "CN=CDP," in line)
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
    assert code == 0 and "Traceback" not in err
