"""Nothing leaks (issue 6): sockets, tasks, threads and temporary folders after many runs;
Ctrl-C; two runs sharing one ``certs/`` cache; a half-written cache; private keys; the bind
address.

The counting tests run the lab in a child process with its own ``TMPDIR``, so what they count
is the lab's alone (other runs on the machine share ``/tmp``), and report back as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from labtest import (
    INTERNET,
    INTRA,
    PKI_CDP,
    client_table,
    contoso,
    fabrikam,
    scenario_toml,
    site_table,
    stage_scenario,
)

from lab.cli import app as cli
from lab.cli import main
from lab.clock import Clock
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.protocols.network import LOOPBACK
from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_scenario
from lab.servers.harness import RunningLab, start_lab

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
ONE_CLIENT = SCENARIOS / "seed2-mp-cert-both-names.toml"

LEAK_MIX = [
    # CRL checking on: LDAP and HTTP CDP retrieval, revocation offline, the second judge
    "seed4-internet-client-ldap-cdp-crl-on.toml",
    # IIS refusing client certificates: 403.13 (revoked) and 403.7 (none)
    "client-cert-revoked.toml",
    "client-no-certificate.toml",
    # the HTTP site: 403.4
    "seed3-smsmp-without-https.toml",
    # the engine refusing the MP's certificate: OpenSSL's handshake-only judgement
    "server-mp-cert-expired.toml",
    # no HTTPS binding at all
    "seed2-public-ca-single-name-plan.toml",
]
"""Cheap bundled scenarios that still go through every way a connection ends."""

EXECUTIONS = 500


def private_tmp(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A private TMPDIR for a child process, and its environment."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    env = dict(os.environ, TMPDIR=str(folder))
    env.pop("IBCM_LAB_DEBUG", None)
    return folder, env


def lab_temp_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ibcm-lab-*"))


# ------------------------------------------------------------------------------------------
# 500 scenario executions in one process
# ------------------------------------------------------------------------------------------

COUNTING_CHILD = r'''
import asyncio, dataclasses, gc, json, logging, os, sys, tempfile, threading, time, warnings
from pathlib import Path

from lab.run import run_loaded
from lab.scenario.loader import load_scenario

warnings.simplefilter("always", ResourceWarning)
caught = []
warnings.showwarning = lambda message, category, *a, **k: caught.append(
    f"{category.__name__}: {message}")
logged = []


class Keep(logging.Handler):
    def emit(self, record):
        logged.append(f"{record.name}: {record.getMessage()}")


for name in ("asyncio", "aiohttp", "ibcm-lab"):
    logging.getLogger(name).addHandler(Keep(logging.WARNING))


def counts(collect=True):
    if collect:
        gc.collect()
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own descriptor, closed already
    return {"fds": len(links), "sockets": sum(x.startswith("socket:[") for x in links),
            "threads": threading.active_count(),
            "temp_folders": sorted(p.name for p in
                                   Path(tempfile.gettempdir()).glob("ibcm-lab-*"))}


files, total, certs = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3]
bundled = [load_scenario(f) for f in files]
batch = [dataclasses.replace(bundled[i % len(bundled)],
                             name=f"leak-{i:03d}-{bundled[i % len(bundled)].name}")
         for i in range(total)]
report = {}


async def main():
    await run_loaded(bundled, certs=certs)  # warm-up: imports, the cache, first handshakes
    report["before"] = counts()
    report["before"]["tasks"] = [repr(t) for t in asyncio.all_tasks()
                                 if t is not asyncio.current_task()]
    during = {"sockets": 0, "temp_folders": 0}
    done = asyncio.Event()

    async def watch():
        # proves the counters see the lab: its listeners and its temporary folder
        while not done.is_set():
            now = counts(collect=False)
            during["sockets"] = max(during["sockets"], now["sockets"])
            during["temp_folders"] = max(during["temp_folders"], len(now["temp_folders"]))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    result = await run_loaded(batch, certs=certs)
    report["seconds"] = round(time.perf_counter() - started, 2)
    done.set()
    await watcher
    report["during"] = during
    report["executions"] = len(result.scenarios)
    report["names"] = len({s.scenario.name for s in result.scenarios})
    report["passed"] = result.passed
    report["after"] = counts()
    report["after"]["tasks"] = [repr(t) for t in asyncio.all_tasks()
                                if t is not asyncio.current_task()]


outside = counts()
asyncio.run(main())
report["outside_before"], report["outside_after"] = outside, counts()
report["warnings"], report["logged"] = caught, logged
print(json.dumps(report))
'''


def test_500_scenario_executions_leave_nothing_behind(tmp_path: Path, certs_dir: Path) -> None:
    """500 executions (six bundled scenarios, distinct names, one lab) in a fresh process:
    the same descriptors, sockets, threads and tasks afterwards as before, no temporary
    folder, no unclosed-resource warning, and nothing logged by asyncio, aiohttp or the
    lab's servers."""
    tmpdir, env = private_tmp(tmp_path)
    files = ",".join(str(SCENARIOS / name) for name in LEAK_MIX)
    done = subprocess.run([sys.executable, "-c", COUNTING_CHILD, files, str(EXECUTIONS),
                           str(certs_dir)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["executions"], report["names"], report["passed"]) == (
        EXECUTIONS, EXECUTIONS, True)
    before, after = report["before"], report["after"]
    # The counters see the lab while it runs: four listeners (MP HTTPS and HTTP, CDP, the
    # DC's LDAP) and its temporary folder.
    assert report["during"]["sockets"] >= before["sockets"] + 4, report
    assert report["during"]["temp_folders"] == 1, report
    for counter in ("fds", "sockets", "threads", "temp_folders", "tasks"):
        assert after[counter] == before[counter], (counter, report)
    assert before["temp_folders"] == [] and before["tasks"] == []
    # Outside the event loop: back to the descriptors the process started with.
    assert report["outside_after"] == report["outside_before"], report
    assert report["warnings"] == [], report["warnings"][:5]
    assert report["logged"] == [], report["logged"][:5]
    assert lab_temp_folders(tmpdir) == []


# ------------------------------------------------------------------------------------------
# Ctrl-C
# ------------------------------------------------------------------------------------------


def _address(hex_address: str) -> str:
    """An address from /proc/net/tcp (IPv4) or tcp6, in its usual text form."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # tcp6: four 32-bit words, each in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening(pid: int | str = "self") -> list[tuple[str, int]]:
    """(address, port) of every TCP socket of process ``pid`` in the LISTEN state."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: TCP_LISTEN
                address, port = fields[1].split(":")
                found.append((_address(address), int(port, 16)))
    return found


def listening_anywhere(ports: set[int]) -> list[str]:
    """Lines of the machine's TCP tables that still LISTEN on one of ``ports``."""
    hits = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) in ports:
                hits.append(line.strip())
    return hits


def group_gone(pgid: int, wait: float = 120.0) -> bool:
    """Whether every process of group ``pgid`` has exited (waiting up to ``wait`` s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def start_run(command: list[str], tmp_path: Path
              ) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``python -m lab COMMAND`` in its own process group, with a private TMPDIR; the group
    is killed if the test leaves it running."""
    tmpdir, env = private_tmp(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "lab", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)
    try:
        yield proc, tmpdir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def wait_for_servers(proc: subprocess.Popen[str], tmpdir: Path) -> list[tuple[str, int]]:
    """The run's four listening sockets (MP HTTPS and HTTP, CDP, the DC's LDAP), once they
    listen and its scratch folder exists."""
    deadline = time.monotonic() + 60
    ports: list[tuple[str, int]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        ports = listening(proc.pid)
        if len(ports) >= 4 and lab_temp_folders(tmpdir):
            break
        time.sleep(0.01)
    assert len(ports) == 4, f"the lab's servers did not come up: {ports}"
    assert all(address == LOOPBACK for address, _ in ports), ports
    assert len(lab_temp_folders(tmpdir)) == 1
    return ports


def signal_group(proc: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    """Send ``signum`` to the run's process group (as the terminal sends Ctrl-C) and wait."""
    assert proc.poll() is None, "the run ended before the signal: give it more to do"
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert group_gone(proc.pid), "a process of the run outlived it"
    return out, err


@pytest.mark.parametrize("moment", ["servers-up", "mid-run", "cold-cache"])
def test_ctrl_c_during_a_run_stops_servers_and_removes_temporary_files(
        tmp_path: Path, certs_dir: Path, moment: str) -> None:
    """``ibcm-lab run scenarios/`` gets SIGINT (the terminal's Ctrl-C, to its whole process
    group) once its servers listen, a little later, or while it generates keys in an empty
    cache: exit 130, one line on stderr and no traceback, its temporary folder removed, its
    ports free, nothing half-written in the cache."""
    certs = tmp_path / "certs" if moment == "cold-cache" else certs_dir
    with start_run(["run", str(SCENARIOS), "--certs", str(certs)], tmp_path) as (proc, tmpdir):
        ports = wait_for_servers(proc, tmpdir)
        if moment == "mid-run":
            time.sleep(0.5)
        out, err = signal_group(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "ibcm-lab: interrupted", err
    assert "Traceback" not in err and "internal error" not in err, err
    assert "PASS" not in out  # no report for a run that did not finish
    assert lab_temp_folders(tmpdir) == [], "the run's temporary folder is still there"
    assert listening_anywhere({port for _, port in ports}) == []
    assert not list(certs.rglob(".tmp-*")), "a half-written cache file was left behind"
    for key in (certs / "keys").glob("*.pem"):
        assert isinstance(serialization.load_pem_private_key(key.read_bytes(), None),
                          rsa.RSAPrivateKey), key
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_ctrl_c_during_the_matrix_stops_every_worker(tmp_path: Path, certs_dir: Path) -> None:
    """The matrix runs one lab per worker process: Ctrl-C reaches them all; none survives,
    no temporary folder is left, one line on stderr."""
    command = ["matrix", "--cdp", "ldap", "--names", "both", "--jobs", "2",
               "--certs", str(certs_dir)]
    with start_run(command, tmp_path) as (proc, tmpdir):
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and proc.poll() is None
               and len(lab_temp_folders(tmpdir)) < 2):
            time.sleep(0.01)
        assert len(lab_temp_folders(tmpdir)) == 2, "the workers' labs did not start"
        _out, err = signal_group(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "ibcm-lab: interrupted", err
    assert "Traceback" not in err, err
    assert lab_temp_folders(tmpdir) == []


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path: Path, certs_dir: Path) -> None:
    with start_run(["run", str(SCENARIOS), "--certs", str(certs_dir)], tmp_path) as (proc,
                                                                                   tmpdir):
        wait_for_servers(proc, tmpdir)
        _out, err = signal_group(proc, signal.SIGTERM)
    assert "Traceback" not in err, err
    assert proc.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    assert err.splitlines()[-1] == "ibcm-lab: terminated", err
    assert lab_temp_folders(tmpdir) == [], "the run's temporary folder is still there"


async def test_ctrl_c_is_not_lost_when_it_lands_as_a_handshake_completes(
        monkeypatch: pytest.MonkeyPatch, certs_dir: Path) -> None:
    """Deterministically, what SIGINT does when it lands in that window: asyncio.run cancels
    the main task just as a client's handshake finishes. The run must end cancelled."""
    real = asyncio.open_connection
    run: asyncio.Task[RunResult] | None = None
    handshakes = 0

    async def handshake_then_ctrl_c(*args: Any, **kwargs: Any) -> Any:
        nonlocal handshakes
        connection = await real(*args, **kwargs)
        handshakes += 1
        if handshakes == 1:
            assert run is not None
            run.cancel()  # what asyncio.run's SIGINT handler does to the main task
        return connection

    monkeypatch.setattr(asyncio, "open_connection", handshake_then_ctrl_c)
    run = asyncio.create_task(run_loaded([load_scenario(ONE_CLIENT)], certs=certs_dir))
    try:
        result: RunResult | str = await run
    except asyncio.CancelledError:
        result = "cancelled"
    assert result == "cancelled", "the run went on after Ctrl-C"
    assert handshakes == 1


def test_ctrl_c_while_the_command_line_starts_exits_130_without_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt  # Ctrl-C while the parser is built (its imports run)

    monkeypatch.setattr(cli, "_parser", interrupted)
    try:
        code: int | str = cli.main(["run", str(ONE_CLIENT)])
    except KeyboardInterrupt:
        code = "KeyboardInterrupt escaped main()"
    assert code == 130
    assert capsys.readouterr().err == "ibcm-lab: interrupted\n"


# ------------------------------------------------------------------------------------------
# Two runs at once on one cache
# ------------------------------------------------------------------------------------------

LOCKSTEP = r'''
"""Run ``ibcm-lab`` with every new key label taken in step with a second run: both runs
enter PKICache.key(label) together, then race on the cache as two runs started at the same
moment on a cold cache do (only waits are added; no behaviour is changed)."""
import hashlib, os, sys, time
from pathlib import Path

from lab.pki import cache

barrier = Path(os.environ["LAB_TEST_BARRIER"])
original = cache.PKICache.key


def key(self, label):
    if label not in getattr(self, "_keys", {}):
        tag = hashlib.sha256(label.encode()).hexdigest()[:16]
        (barrier / f"{tag}.{os.getpid()}").touch()
        deadline = time.monotonic() + 5
        while (len(list(barrier.glob(f"{tag}.*"))) < 2 and not list(barrier.glob("done.*"))
               and time.monotonic() < deadline):
            time.sleep(0.001)
    return original(self, label)


cache.PKICache.key = key
from lab.cli import app as cli
from lab.cli import main

try:
    code = main(sys.argv[1:])
finally:
    (barrier / f"done.{os.getpid()}").touch()
sys.exit(code)
'''


def check_cache(certs: Path) -> None:
    """Every file of the cache parses; keys 0600 in a 0700 folder; nothing half-written."""
    assert not list(certs.rglob(".tmp-*")), list(certs.rglob(".tmp-*"))
    assert stat.S_IMODE((certs / "keys").stat().st_mode) == 0o700
    keys = list((certs / "keys").iterdir())
    assert keys
    for path in keys:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048, path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (certs / "certs").iterdir():
        x509.load_pem_x509_certificate(path.read_bytes())
    for path in (certs / "public").iterdir():
        assert x509.load_pem_x509_certificates(path.read_bytes()), path


def test_two_runs_at_once_on_one_cold_cache_never_collide(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    shim = tmp_path / "lockstep.py"
    shim.write_text(LOCKSTEP)
    tmpdir, env = private_tmp(tmp_path)
    env["LAB_TEST_BARRIER"] = str(barrier)
    command = [sys.executable, str(shim), "run", str(SCENARIOS), "--certs", str(certs)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=tmp_path) for _ in range(2)]
    outcomes = []
    for run in runs:
        try:
            _out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
        outcomes.append((run.returncode, err))
    for code, err in outcomes:
        assert "internal error" not in err and "Traceback" not in err, err
        assert code == 0, err
    check_cache(certs)
    assert lab_temp_folders(tmpdir) == []


def test_two_runs_at_once_on_one_warm_cache(tmp_path: Path, certs_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The twin that works today: on a warm cache nothing is written, so two runs started
    together both pass and leave the cache intact."""
    files = [str(SCENARIOS / name) for name in LEAK_MIX]
    assert main(["run", *files, "--certs", str(certs_dir)]) == 0, capsys.readouterr()
    tmpdir, env = private_tmp(tmp_path)
    command = [sys.executable, "-m", "lab", "run", *files, "--certs", str(certs_dir),
               "--format", "json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=tmp_path) for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        assert all(s["passed"] for s in json.loads(out))
    check_cache(certs_dir)
    assert lab_temp_folders(tmpdir) == []


# ------------------------------------------------------------------------------------------
# A half-written cache
# ------------------------------------------------------------------------------------------


def built(certs: Path) -> BuiltPKI:
    return build_pki(load_scenario(ONE_CLIENT), Clock(), PKICache(certs))


def damage(path: Path, how: str) -> None:
    """What a writer killed half-way leaves behind: nothing, or the first half."""
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[:len(data) // 2])


@pytest.mark.parametrize("how", ["empty", "half"])
def test_half_written_key_and_certificate_are_rebuilt(tmp_path: Path, how: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "certs"
    assert main(["run", str(ONE_CLIENT), "--certs", str(certs)]) == 0
    pki = built(certs)
    assert pki.mp is not None
    key, cert = pki.clients["PC01"].key_path, pki.mp.cert_path
    damage(key, how)
    damage(cert, how)
    assert main(["run", str(ONE_CLIENT), "--certs", str(certs)]) == 0, capsys.readouterr()
    assert isinstance(serialization.load_pem_private_key(key.read_bytes(), None),
                      rsa.RSAPrivateKey)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    rebuilt = x509.load_pem_x509_certificate(cert.read_bytes())
    assert rebuilt.subject == pki.mp.cert.subject
    assert rebuilt.public_key() == pki.mp.cert.public_key()  # the MP's key was intact
    check_cache(certs)


@pytest.mark.parametrize("whose", ["mp", "client"])
def test_half_written_public_chain_is_rebuilt(tmp_path: Path, whose: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "certs"
    assert main(["run", str(ONE_CLIENT), "--certs", str(certs)]) == 0
    pki = built(certs)
    issued = pki.mp if whose == "mp" else pki.clients["PC01"]
    assert issued is not None
    expected = issued.chain_path.read_bytes()
    damage(issued.chain_path, "half")
    assert main(["run", str(ONE_CLIENT), "--certs", str(certs)]) == 0, capsys.readouterr()
    assert issued.chain_path.read_bytes() == expected


# ------------------------------------------------------------------------------------------
# Private keys: 0600, and no URL reaches one
# ------------------------------------------------------------------------------------------

PUBLISHING = scenario_toml(
    title="test_leaks: every URL kind",
    site=site_table("check_crl = true"),
    cas=contoso(f'cdp = ["ldap", "http", "{PKI_CDP}"]') + fabrikam(),
    clients=client_table("PC01") + client_table("PC02", '[client.cert]\n'
                                                        'issuer = "Fabrikam Public CA"\n'))


async def fetch(port: int, target: str, host: str, *, method: str = "GET",
                tls: ssl.SSLContext | None = None, sni: str | None = None) -> tuple[int, bytes]:
    """One raw HTTP/1.1 request (the target is sent exactly as given)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=tls, server_hostname=sni)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode("latin-1"))
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return int(data.split(b" ", 2)[1]), data


def key_targets(key: Path, root: Path) -> list[str]:
    """Ways a URL could name ``key``: its name, its folder, its absolute path, encoded,
    under the CertEnroll folder, and climbing out of it."""
    name, stem = key.name, key.name.removesuffix(".key.pem")
    absolute = str(key)
    return [
        f"/{name}", f"/keys/{name}", f"/{root.name}/keys/{name}", f"/CertEnroll/{name}",
        f"/CertEnroll/{stem}.crl", f"/CertEnroll/{stem}.crt", f"/CertEnroll/../keys/{name}",
        f"/CertEnroll/../../keys/{name}", f"/CertEnroll/%2e%2e/keys/{name}",
        f"/CertEnroll/..%2Fkeys%2F{name}", f"/%2E%2E/%2E%2E/keys/{name}",
        absolute, quote(absolute), f"/CertEnroll/../../../../../../..{absolute}",
        f"//{absolute.lstrip('/')}", f"/CertEnroll/{quote(absolute, safe='')}",
    ]


async def test_no_url_reaches_a_private_key(lab: RunningLab, cache: PKICache) -> None:
    """Every key of the cache, by every name and path variant, on every host the CDP server
    plays and on the MP's HTTP and HTTPS sites: never a 200, never key material; the
    published URLs next to them are served. Keys are 0600 in a 0700 folder."""
    dep = await stage_scenario(lab, cache, PUBLISHING, name="test-leaks-keys")
    keys = sorted((cache.root / "keys").glob("*.key.pem"))
    mine = {dep.pki.clients["PC01"].key_path, dep.pki.clients["PC02"].key_path}
    assert dep.pki.mp is not None
    mine.add(dep.pki.mp.key_path)
    assert mine <= set(keys)
    assert stat.S_IMODE((cache.root / "keys").stat().st_mode) == 0o700
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    cdp_hosts = sorted({host for (host, port), loopback in lab.hosts.items().items()
                        if loopback == lab.ports.cdp and port == 80})
    assert {"ca01.contoso.local", "pki.contoso.com", "crl.fabrikam-trust.example"} <= set(
        cdp_hosts)
    hosts = [*cdp_hosts, f"{LOOPBACK}:{lab.ports.cdp}", "localhost"]
    for key in keys:
        for target in key_targets(key, cache.root):
            for host in hosts:
                status, data = await fetch(lab.ports.cdp, target, host)
                assert status == 404, (target, host, status)
                assert b"PRIVATE KEY" not in data
            status, data = await fetch(lab.ports.cdp, target, hosts[0], method="HEAD")
            assert status == 404, (target, "HEAD")
    # The MP: its HTTP site refuses (HTTPS only), its HTTPS site knows no such path.
    tls = ssl.create_default_context(cadata=dep.pki.trust_pem().decode())
    client = dep.pki.clients["PC01"]
    tls.load_cert_chain(client.chain_path, client.key_path)
    for key in sorted(mine):
        for target in key_targets(key, cache.root)[:10]:
            status, data = await fetch(lab.ports.mp_http, target, INTRA)
            assert status == 403 and b"PRIVATE KEY" not in data, (target, status)
            status, data = await fetch(lab.ports.mp_https, target, INTERNET, tls=tls,
                                       sni=INTERNET)
            assert status == 404 and b"PRIVATE KEY" not in data, (target, status)
    # Twins: what is published is served, and none of it is key material.
    http = [p for p in dep.pki.publications if p.url.startswith("http://")]
    assert len(http) >= 4
    for pub in http:
        host, _, path = pub.url[len("http://"):].partition("/")
        status, data = await fetch(lab.ports.cdp, f"/{path}", host)
        assert status == 200 and data.endswith(pub.data), pub.url
        assert b"PRIVATE KEY" not in data
    status, data = await fetch(lab.ports.mp_https, "/SMS_MP/.sms_aut?MPLIST", INTERNET, tls=tls,
                               sni=INTERNET)
    assert status == 200


async def test_the_placeholder_key_is_gone_once_the_servers_listen(tmp_path: Path) -> None:
    """The MP's placeholder key lives in the scratch folder only while it is loaded."""
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    async with start_lab(scratch=str(scratch)):
        assert list(scratch.iterdir()) == []
    assert list(scratch.iterdir()) == []


# ------------------------------------------------------------------------------------------
# The bind address
# ------------------------------------------------------------------------------------------


async def test_servers_listen_on_127_0_0_1_only(lab: RunningLab) -> None:
    """Every listening socket of this process is on 127.0.0.1 (none on IPv6 or on all
    addresses), and the lab's four servers are among them."""
    sockets = listening()
    ports = {lab.ports.mp_https, lab.ports.mp_http, lab.ports.cdp, lab.ports.ldap}
    assert ports <= {port for _, port in sockets}
    assert {address for address, _ in sockets} == {LOOPBACK}, sockets


async def test_another_address_only_when_asked(tmp_path: Path) -> None:
    """The twin: ``host=`` (``ibcm-lab serve --host``, which warns) binds elsewhere."""
    async with start_lab(host="127.0.0.2", scratch=str(tmp_path)) as running:
        ports = {running.ports.mp_https, running.ports.mp_http, running.ports.cdp,
                 running.ports.ldap}
        mine = [(address, port) for address, port in listening() if port in ports]
        assert sorted(address for address, _ in mine) == ["127.0.0.2"] * 4


@pytest.mark.parametrize("command", [
    ["run", str(ONE_CLIENT)], ["demo"], ["matrix"],
    ["check-cert", str(ONE_CLIENT), "--no-replay"],
])
def test_only_serve_takes_a_bind_address(command: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--host", "0.0.0.0"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --host 0.0.0.0" in capsys.readouterr().err


def test_tempfile_folder_is_the_private_one_in_children(tmp_path: Path) -> None:
    """The counting tests rely on TMPDIR steering the lab's temporary folders."""
    folder, env = private_tmp(tmp_path)
    done = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.gettempdir())"],
                          capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == str(folder)
    assert tempfile.gettempdir() != str(folder)
