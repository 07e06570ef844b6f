"""Ctrl-C and SIGTERM land in every phase (issue 23 part 4, issue 20's signal item).

Every command ends after SIGINT or SIGTERM with exit 130 or 143, one line on stderr and no
traceback, no worker process or listening port left and no output that looks complete. The
long phases are cancellable: key generation stops between two keys, the matrix's pool is
cancelled rather than drained. No test measures time: timeouts here are hang guards only.

Also here: what a long-running lab records stays bounded in memory (issue 23 part 3), and
fleet-sized scenarios are refused at load time (the scale caps).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from labtest import SCENARIOS

from lab.cli import main
from lab.errors import ScenarioError
from lab.pki.cache import PKICache
from lab.run import stage_scenario
from lab.scenario.loader import load_scenario, load_scenario_text, scale_cap
from lab.servers.harness import start_lab

HANG = 120
"""Seconds a child may take before the test calls it hung (a guard, not a speed check)."""
BASE = SCENARIOS / "internet-only-client.toml"
CLIENT = """
[[client]]
name = "PC{n:04d}"
ccmsetup = "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local"
[[client.step]]
action = "install"
location = "intranet"
"""


def many_clients(n: int) -> str:
    text = BASE.read_text(encoding="utf-8")
    head = text[:text.index("[[client]]")]
    return head + "".join(CLIENT.format(n=i) for i in range(n))


def lab_temp_folders(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("ibcm-lab-*")}


@contextlib.contextmanager
def started(command: list[str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``python -m lab COMMAND`` in its own process group with a private TMPDIR (Ctrl-C at
    its default, as in a terminal); killed if the test leaves it running."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    env.pop("IBCM_LAB_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "lab", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        yield proc, tmpdir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def wait_for(condition: Any, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} did not happen (exit {proc.poll()})")


def group_gone(pgid: int) -> bool:
    deadline = time.monotonic() + HANG
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def assert_stopped(proc: subprocess.Popen[str], err: str, signum: int) -> None:
    code = 130 if signum == signal.SIGINT else 143
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"ibcm-lab: {word}", err
    assert "Traceback" not in err and "internal error" not in err, err
    assert group_gone(proc.pid), "a process of the command outlived it"


# ------------------------------------------------------------------------------------------
# Key generation on a cold cache
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_key_generation_between_two_keys(tmp_path: Path, signum: int) -> None:
    """200 clients on an empty cache: one key each. Ctrl-C once a few keys exist stops the
    run before the next key (it used to go on until every key was generated)."""
    scenario = tmp_path / "fleet.toml"
    scenario.write_text(many_clients(200), encoding="utf-8")
    certs = tmp_path / "certs"
    keys = certs / "keys"
    with started(["run", str(scenario), "--certs", str(certs)], tmp_path) as (proc, tmpdir):
        wait_for(lambda: keys.is_dir() and len(list(keys.glob("*.pem"))) >= 3, proc,
                 "key generation")
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)  # the terminal's Ctrl-C reaches the whole group
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=HANG)
    assert_stopped(proc, err, signum)
    assert "PASS" not in out and "scenarios passed" not in out
    generated = len(list(keys.glob("*.pem")))
    assert generated < 100, f"{generated} keys: generation went on after the signal"
    assert not list(certs.rglob(".tmp-*")), "a half-written key was left behind"
    assert lab_temp_folders(tmpdir) == set()


# ------------------------------------------------------------------------------------------
# The matrix: the pool is cancelled, not drained
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_matrix_pool_is_cancelled_not_drained(tmp_path: Path, certs_dir: Path,
                                                  signum: int) -> None:
    """The whole grid on two workers; the signal once both workers run a lab. No worker
    starts another lab after it (each batch runs in a lab of its own, a temporary folder
    ``ibcm-lab-*``): the queued batches are cancelled, the running ones stopped."""
    with started(["matrix", "--jobs", "2", "--certs", str(certs_dir)], tmp_path) as (proc,
                                                                                   tmpdir):
        wait_for(lambda: len(lab_temp_folders(tmpdir)) >= 2, proc, "two workers' labs")
        at_signal = lab_temp_folders(tmpdir)
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        seen: set[str] = set()
        deadline = time.monotonic() + HANG
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= lab_temp_folders(tmpdir)
            time.sleep(0.005)
        out, err = proc.communicate(timeout=HANG)
    assert_stopped(proc, err, signum)
    assert seen - at_signal == set(), "a worker started another lab after the signal"
    assert lab_temp_folders(tmpdir) == set(), "a worker's temporary folder is still there"
    assert "cells ok" not in out


# ------------------------------------------------------------------------------------------
# Scale caps
# ------------------------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_a_fleet_sized_scenario_is_refused_at_load_time(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(many_clients(scale_cap("max_clients") + 1), encoding="utf-8")
    code, out, err = run_cli("run", str(path), "--certs", str(tmp_path / "certs"))
    assert code == 2 and out == ""
    assert f"{path}:" in err and "max_clients = 250" in err
    assert "IBCM_LAB_LIMIT_SCENARIO_CLIENTS=N" in err
    assert "ibcm-lab bench" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "certs" / "keys").exists() or not list(
        (tmp_path / "certs" / "keys").iterdir()), "keys were generated for a refused file"


def test_the_cap_is_raised_with_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    text = many_clients(3)
    monkeypatch.setenv("IBCM_LAB_LIMIT_SCENARIO_CLIENTS", "2")
    with pytest.raises(ScenarioError, match=r"client\[2\]: the scenario is too large"):
        load_scenario_text(text, file="x.toml")
    monkeypatch.setenv("IBCM_LAB_LIMIT_SCENARIO_CLIENTS", "3")
    assert len(load_scenario_text(text, file="x.toml").clients) == 3


def test_too_many_steps_and_too_many_bytes_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    text = many_clients(5)
    monkeypatch.setenv("IBCM_LAB_LIMIT_SCENARIO_STEPS", "4")
    with pytest.raises(ScenarioError, match=r"client\[4\]\.step: .*max_steps = 4"):
        load_scenario_text(text, file="x.toml")
    monkeypatch.delenv("IBCM_LAB_LIMIT_SCENARIO_STEPS")
    with pytest.raises(ScenarioError, match=r"max_scenario_bytes = 1048576"):
        load_scenario_text(text + "#" * (2 * 1024 * 1024) + "\n", file="big.toml")


# ------------------------------------------------------------------------------------------
# Bounded journals for long-running labs
# ------------------------------------------------------------------------------------------


async def test_a_long_running_lab_keeps_a_window_and_hands_every_entry_on(
        tmp_path: Path, certs_dir: Path) -> None:
    sunk: list[tuple[str, Any]] = []
    scenario = load_scenario(SCENARIOS / "seed3-smsmp-with-https.toml")
    async with start_lab(scratch=str(tmp_path), journal_window=5,
                         journal_sink=lambda name, entry: sunk.append((name, entry))) as lab:
        await stage_scenario(lab, scenario, PKICache(certs_dir))
        host = scenario.mp.intranet_fqdn
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(
                        f"http://127.0.0.1:{lab.ports.mp_http}/SMS_MP/.sms_aut?MPLIST",
                        headers={"Host": host}) as response:
                    await response.read()
                    assert response.status == 403
        await asyncio.sleep(0)
        assert len(lab.mp_state.records) == 5
        assert sum(1 for name, _ in sunk if name == "records") == 20
        assert list(lab.mp_state.records) == [e for n, e in sunk if n == "records"][-5:]


async def test_a_run_keeps_every_entry(tmp_path: Path, certs_dir: Path) -> None:
    """The twin: a run's report needs every request, so a lab without a window keeps all."""
    scenario = load_scenario(SCENARIOS / "seed3-smsmp-with-https.toml")
    async with start_lab(scratch=str(tmp_path)) as lab:
        await stage_scenario(lab, scenario, PKICache(certs_dir))
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(
                        f"http://127.0.0.1:{lab.ports.mp_http}/SMS_MP/.sms_aut?MPLIST",
                        headers={"Host": scenario.mp.intranet_fqdn}) as response:
                    await response.read()
        assert len(lab.mp_state.records) == 20


# ------------------------------------------------------------------------------------------
# bench: its MP process and load generator
# ------------------------------------------------------------------------------------------


def children_running(pid: int, module: str) -> list[int]:
    """Processes of group ``pid`` whose command line names ``module``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) != pid:
                continue
            if module in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_bench_stops_with_its_mp_process(tmp_path: Path, certs_dir: Path, signum: int) -> None:
    """The signal while the bench's MP runs in a process of its own and the load generator
    drives it: exit 130/143, one line, no traceback (asyncio's included), no process left."""
    command = ["bench", "--quick", "--repeat", "1", "--only", "handshake", "--certs",
               str(certs_dir)]
    with started(command, tmp_path) as (proc, _tmpdir):
        wait_for(lambda: children_running(proc.pid, "lab.tools.bench.processes"), proc,
                 "the bench's MP process")
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=HANG)
    assert_stopped(proc, err, signum)
    assert "measurement" not in out  # no table for an unfinished bench
