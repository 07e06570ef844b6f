"""The fleet measurement: N clients, each with its own client certificate, registering and
sending inventory against one mock MP (its own process): wall time, requests/s, errors, peak
RSS, CPU and the rate of CRL fetches IIS made to the CDP server."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lab.tools.bench.figures import BenchReport, Goal, Sizes
from lab.tools.bench.loadgen import drive_fleet
from lab.tools.bench.machine import peak_rss_mib, reset_peak_rss, run_loop
from lab.tools.bench.processes import MpProcess
from lab.tools.bench.scenario import build_bench_pki, ecdsa_leaf, write_private

if TYPE_CHECKING:
    from lab.pki.build import BuiltCA

NOTE = ("fleet: lightweight clients in this process (their own ECDSA P-256 "
        "certificate each, OpenSSL checks the MP's certificate), the MP and "
        "its CDP server in another; each client registers on a new "
        "connection (a full mutual-TLS handshake) and sends inventory on a "
        "second one that resumes the TLS session, as SChannel's client "
        "session cache does, from the MP's server-side session cache (IIS "
        "still judges the client certificate the session carries); IIS "
        "judges every new client certificate against the CA's CRL, "
        "retrieved once and kept until its nextUpdate, as CryptoAPI's URL "
        "cache does")


def issue_fleet(ca: BuiltCA, folder: Path, count: int, now: dt.datetime) -> list[Path]:
    """``count`` client certificates, one per simulated client, each with its own ECDSA P-256
    key, issued by ``ca`` with its CDP: one PEM file (key + certificate) each."""
    paths = []
    for i in range(count):
        name = f"FLEET{i:05d}.contoso.local"
        key, cert = ecdsa_leaf(ca, cn=name, san=(name,), server=False, now=now)
        paths.append(write_private(folder / f"{i:05d}.pem", key + cert))
    return paths


def _gets(count: float, clients: int) -> str:
    return f"{count:,.0f} GET{'' if count == 1 else 's'} for {clients:,} client certificates"


def bench_fleet(res: BenchReport, certs: str, sizes: Sizes) -> None:
    """Add the fleet figures to ``res``: every size of ``sizes.fleet``, a new MP each run."""
    pki = build_bench_pki(certs)
    ca = pki.cas["Contoso-CA"]
    trust = pki.trust_pem().decode()
    biggest = max(sizes.fleet)
    per_n: dict[int, dict[str, list[float]]] = {n: {} for n in sizes.fleet}
    first_errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-fleet-") as tmp:
        os.chmod(tmp, 0o700)
        began = time.perf_counter()
        files = issue_fleet(ca, Path(tmp), biggest, dt.datetime.now(dt.UTC))
        issued_s = time.perf_counter() - began
        for _ in range(res.repeat):
            for n in sizes.fleet:
                with MpProcess(certs) as mp:
                    reset = reset_peak_rss()
                    before = mp.ask("stats")
                    load = run_loop(drive_fleet(mp.mp_https, trust, files[:n],
                                                   concurrency=sizes.fleet_concurrency))
                    stats = mp.ask("stats")
                fig = per_n[n]
                requests = 2 * n
                fig.setdefault("wall", []).append(load.wall_s)
                fig.setdefault("rps", []).append(requests / load.wall_s)
                fig.setdefault("ms_per_client", []).append(load.wall_s * 1000 / n)
                fig.setdefault("errors", []).append(float(requests - load.done))
                fig.setdefault("mp_rss", []).append(float(stats["peak_rss_mib"]))
                if reset:
                    fig.setdefault("client_rss", []).append(peak_rss_mib())
                fig.setdefault("crl", []).append(stats["crl_gets"] / load.wall_s)
                fig.setdefault("crl_count", []).append(float(stats["crl_gets"]))
                fig.setdefault("resumed", []).append(float(load.resumed))
                fig.setdefault("client_cpu", []).append(load.cpu_s / load.wall_s)
                mp_cpu = float(stats["cpu_s"]) - float(before["cpu_s"])
                fig.setdefault("mp_cpu", []).append(mp_cpu / load.wall_s)
                fig.setdefault("mp_cpu_ms", []).append(mp_cpu * 1000 / requests)
                first_errors.extend(load.first_errors[:2])
    res.add("fleet", "fleet_issue_s", f"issue {biggest:,} client certificates (ECDSA P-256)",
            "s", [issued_s], note="setup, not timed below")
    for n in sizes.fleet:
        fig = per_n[n]
        big = n == biggest
        res.add("fleet", f"fleet_{n}_wall_s", f"fleet {n:,}: wall time", "s", fig["wall"],
                Goal("<", 90.0, "< 90 s") if big else None,
                note="register + inventory, 2 connections per client")
        res.add("fleet", f"fleet_{n}_rps", f"fleet {n:,}: requests/s", "/s", fig["rps"])
        res.add("fleet", f"fleet_{n}_errors", f"fleet {n:,}: errors", "", fig["errors"],
                Goal("<", 0.5, "none"), note="; ".join(first_errors[:2]) if big else "")
        res.add("fleet", f"fleet_{n}_mp_rss", f"fleet {n:,}: MP peak RSS", "MiB", fig["mp_rss"],
                Goal("<", 1024.0, "< 1 GiB") if big else None)
        if "client_rss" in fig:
            res.add("fleet", f"fleet_{n}_client_rss", f"fleet {n:,}: clients' peak RSS", "MiB",
                    fig["client_rss"], note="the bench process")
        res.add("fleet", f"fleet_{n}_crl_rate", f"fleet {n:,}: CRL GETs/s at the CDP server",
                "/s", fig["crl"], note=_gets(fig["crl_count"][0], n))
        res.add("fleet", f"fleet_{n}_resumed", f"fleet {n:,}: connections that resumed TLS",
                "", fig["resumed"], note="inventory resumes registration's session")
        res.add("fleet", f"fleet_{n}_mp_cpu", f"fleet {n:,}: MP CPU use", "x", fig["mp_cpu"],
                note="1 = the MP process keeps one core busy" if big else "")
        res.add("fleet", f"fleet_{n}_mp_cpu_ms", f"fleet {n:,}: MP CPU per request", "ms",
                fig["mp_cpu_ms"])
        res.add("fleet", f"fleet_{n}_client_cpu", f"fleet {n:,}: clients' CPU use", "x",
                fig["client_cpu"])
    if len(sizes.fleet) > 1:
        small = min(sizes.fleet)
        growth = [(b / s) / (biggest / small) for s, b in
                  zip(per_n[small]["wall"], per_n[biggest]["wall"], strict=True)]
        res.add("fleet", "fleet_growth", f"fleet time growth {small:,} -> {biggest:,} "
                "(1 = linear)", "x", growth, Goal("<", 1.2, "< 1.2 (linear)"))
