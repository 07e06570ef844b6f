"""``ibcm-lab bench`` (issue 7) at tiny sizes: every measurement runs and reports its figures.

Benchmarks never run as timed tests: nothing here asserts how fast anything is, only that
each figure is measured, numeric and named with its goal, and that the command's output and
JSON agree.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.tools.bench import nginx
from lab.tools.bench.bench import run_bench
from lab.tools.bench.figures import GROUPS, BenchOptions, BenchReport, Goal
from lab.tools.bench.machine import machine_info
from lab.tools.bench.table import render_plain, summary_lines

# Every figure that carries one of the goals, whatever the machine.
GOALS = {
    "warm_run_s": "< 1 s",
    "help_s": "< 0.3 s",
    "cell_vs_floor": "<= 2x",
    "matrix_growth": "< 1.2 (linear)",
    "timeline_ratio": "< 1.5x (nothing sleeps)",
    "fleet_100_wall_s": "< 90 s",
    "fleet_100_errors": "none",
    "fleet_50_errors": "none",
    "fleet_100_mp_rss": "< 1 GiB",
    "fleet_growth": "< 1.2 (linear)",
}


def test_quick_bench_reports_every_figure(tmp_path: Path, certs_dir: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "lab", "bench", "--quick", "--repeat", "1", "--json", str(out),
         "--certs", str(certs_dir)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["repeat"] == 1
    assert data["errors"] == []
    machine = data["machine"]
    assert machine["cpus"] >= 1 and machine["cpu_model"] and machine["python"]
    assert machine["openssl"].startswith("OpenSSL")
    assert data["date"][:4].isdigit()
    assert len(data["parallel_speedup"]) == 2 and all(v > 0 for v in data["parallel_speedup"])
    figures = {f["key"]: f for f in data["figures"]}
    assert {f["group"] for f in data["figures"]} == set(GROUPS)
    for f in data["figures"]:
        assert f["samples"], f["key"]
        for name in ("median", "min", "max"):
            assert isinstance(f[name], (int, float)) and math.isfinite(f[name]), (f["key"], name)
        assert f["min"] <= f["median"] <= f["max"], f["key"]
        assert f["met"] is None  # --quick judges no goal
    for key, goal in GOALS.items():
        assert figures[key]["goal"]["text"] == goal, key
    # The full matrix of the run carries the 15 s goal.
    matrix_walls = sorted((k for k in figures if k.startswith("matrix_") and
                           k.endswith("_cells_s")), key=lambda k: int(k.split("_")[1]))
    assert len(matrix_walls) == 3
    assert figures[matrix_walls[-1]]["goal"]["text"] == "< 15 s"
    assert figures["mp_hs_rsa"]["note"] == "MP process, 1 core; TLSv1.3"
    for key in ("cold_run_s", "demo_s", "matrix_cells_per_s", "floor_ms", "cell_core_ms",
                "floor_handshake_ms", "floor_crl_ms", "mp_hs_rsa", "mp_hs_ecdsa",
                "fleet_50_wall_s", "fleet_100_rps", "fleet_100_crl_rate"):
        assert figures[key]["median"] > 0, key
    assert figures["fleet_100_errors"]["median"] == 0
    # IIS retrieved the CRL and its delta CRL (AD CS publishes deltas by default) once each
    # and judged every client certificate against them; every inventory connection resumed
    # its registration TLS session.
    assert figures["fleet_100_crl_rate"]["note"] == "2 GETs for 100 client certificates"
    assert figures["fleet_100_resumed"]["median"] == 100
    # The Python floor: the MP's TLS context with no HTTP stack answers as the MP does.
    for kind in ("rsa", "ecdsa"):
        assert figures[f"bare_hs_{kind}"]["median"] > 0
        assert figures[f"bare_cpu_ms_{kind}"]["median"] > 0
    if nginx.find_nginx() is None:
        assert any("apt-get install nginx-light" in s["why"] for s in data["skipped"])
    else:
        assert figures["mp_vs_nginx_rsa"]["goal"]["text"] == ">= 0.75x"
        # Both servers are compared on the same protocol and the same session set-up; nginx
        # as installed is shown beside, without a goal.
        assert figures["nginx_hs_rsa"]["note"] == "1 worker; TLSv1.3; a session cache, as the MP"
        assert figures["nginx_defaults_hs_rsa"]["note"] == "TLSv1.3; 2 stateless tickets"
        assert figures["mp_vs_nginx_defaults_ecdsa"]["goal"] is None
        assert figures["nginx_hs_ecdsa"]["median"] > 0
        assert figures["bare_vs_nginx_cpu_rsa"]["median"] > 0
    # The table shows the same figures.
    for label in ("ibcm-lab --help", "cell cost / floor", "MP mutual-TLS handshakes/s, RSA-2048",
                  "fleet 100: wall time"):
        assert label in done.stdout
    assert "goals are judged at full sizes only" in done.stdout


def test_handshake_without_nginx_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, certs_dir: Path) -> None:
    monkeypatch.setattr(nginx, "find_nginx", lambda: None)
    res = run_bench(BenchOptions(certs=str(certs_dir), quick=True, repeat=1, only=["handshake"]))
    assert res.errors == []
    assert res.skipped == [("handshake", "nginx comparison skipped: nginx is not installed "
                                         "(apt-get install nginx-light)")]
    keys = {f.key for f in res.figures}
    assert {"mp_hs_rsa", "mp_hs_ecdsa", "bare_hs_rsa", "bare_hs_ecdsa"} <= keys
    assert not any("nginx" in k for k in keys)
    text = render_plain(res)
    assert "skipped: nginx is not installed (apt-get install nginx-light)" in text


def test_only_and_repeat_are_checked(certs_dir: Path) -> None:
    with pytest.raises(UsageError, match="--only: expected names from cold, warm"):
        run_bench(BenchOptions(certs=str(certs_dir), only=["speed"]))
    with pytest.raises(UsageError, match="--repeat expects"):
        run_bench(BenchOptions(certs=str(certs_dir), repeat=0))
    res = run_bench(BenchOptions(certs=str(certs_dir), quick=True, repeat=2, only=["help"]))
    assert [f.key for f in res.figures] == ["help_s"]
    assert len(res.figures[0].samples) == 2


def test_bad_json_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "bench", "--quick", "--only", "help",
         "--json", str(tmp_path / "missing" / "out.json")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "--json" in done.stderr and "does not exist" in done.stderr


def test_goals_judge_the_median_and_say_by_how_much() -> None:
    res = BenchReport(quick=False, repeat=3, machine=machine_info(nginx=None))
    fast = res.add("warm", "a", "a", "s", [0.4, 2.0, 0.5], Goal("<", 1.0, "< 1 s"))
    slow = res.add("fleet", "b", "b", "s", [120, 130, 135], Goal("<", 90.0, "< 90 s"))
    ratio = res.add("handshake", "c", "c", "x", [0.5, 0.6, 0.7],
                    Goal(">=", 0.75, ">= 0.75x"))
    assert (res.met(fast), res.met(slow), res.met(ratio)) == (True, False, False)
    assert slow.goal is not None and slow.goal.miss(slow.median) == "1.44x the limit"
    assert ratio.goal is not None and ratio.goal.miss(ratio.median) == "80% of the goal"
    text = "\n".join(summary_lines(res))
    assert "goals: 1 of 3 met" in text
    assert "missed: b: 130 s (goal < 90 s; 1.44x the limit)" in text


def test_unusable_certs_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = subprocess.run(
        [sys.executable, "-m", "lab", "bench", "--quick", "--only", "help",
         "--certs", str(blocker / "certs")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ibcm-lab: error: cannot use the certificate cache folder")
    assert "Traceback" not in done.stderr


def test_mp_process_entry_point_takes_only_serve() -> None:
    """The MP process's module entry point (internal to the bench) refuses anything else."""
    done = subprocess.run([sys.executable, "-m", "lab.tools.bench.processes", "serve"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "usage: python -m lab.tools.bench.processes _serve SPEC" in done.stderr
