"""The handshake measurement: mutual-TLS handshakes per second on the mock MP (its own
process) with an RSA-2048 and an ECDSA P-256 certificate, beside a bare Python TLS server and
nginx serving the same certificates, driven by the same load generator, interleaved."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from lab.tools.bench import nginx as nginx_tool
from lab.tools.bench.figures import BenchReport, Goal, Sizes
from lab.tools.bench.loadgen import drive_handshakes
from lab.tools.bench.machine import cpu_seconds, run_loop
from lab.tools.bench.nginx import Nginx
from lab.tools.bench.processes import MpProcess
from lab.tools.bench.scenario import INTERNET, INTRA, build_bench_pki, ecdsa_leaf, write_private

NOTE = ("handshakes: the MP's mock IIS in its own process and nginx with one "
        "worker (ssl_protocols TLSv1.2 TLSv1.3, so that both negotiate TLS "
        "1.3 with the generator; a server-side session cache and no "
        "stateless tickets, as the MP keeps sessions, or, 'as installed', "
        "its own defaults), each on its own "
        "core; the generator (this process) makes a new connection per "
        "request, no session resumption; the ECDSA "
        "server and client certificates are issued by the bench under the "
        "lab's (RSA) CA")


def _versions(seen: Counter[str]) -> str:
    """``TLSv1.3`` or, where connections differed, ``TLSv1.3 x 90, TLSv1.2 x 10``."""
    if len(seen) == 1:
        return next(iter(seen))
    return ", ".join(f"{v} x {n:,}" for v, n in seen.most_common()) or "no TLS version seen"


def bench_handshake(res: BenchReport, certs: str, sizes: Sizes) -> None:
    """Add the handshake figures to ``res`` (nginx's are skipped when it is not installed)."""
    from cryptography.hazmat.primitives import serialization

    pki = build_bench_pki(certs)
    ca = pki.cas["Contoso-CA"]
    assert pki.mp is not None
    binary = nginx_tool.find_nginx()
    now = dt.datetime.now(dt.UTC)
    kinds = ("rsa", "ecdsa")
    titles = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-hs-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)  # nginx's worker (another user) writes its logs here
        key_pem, cert_pem = ecdsa_leaf(ca, cn=INTRA, san=(INTRA, INTERNET), server=True,
                                       now=now)
        ecdsa_key = write_private(folder / "mp-ecdsa.key", key_pem)
        ecdsa_chain = folder / "mp-ecdsa.pem"
        ecdsa_chain.write_bytes(cert_pem)
        ckey, ccert = ecdsa_leaf(ca, cn="BENCH02.contoso.local",
                                 san=("BENCH02.contoso.local",), server=False, now=now)
        client_ecdsa = write_private(folder / "client-ecdsa.pem", ckey + ccert)
        client_ca = folder / "client-ca.pem"
        client_ca.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        trust = pki.trust_pem().decode()
        client = pki.clients["BENCH01"]
        tls: dict[str, ssl.SSLContext] = {}
        for kind in kinds:
            ctx = ssl.create_default_context(cadata=trust)
            if kind == "rsa":
                ctx.load_cert_chain(client.chain_path, client.key_path)
            else:
                ctx.load_cert_chain(client_ecdsa)
            tls[kind] = ctx
        server_certs = {"rsa": (pki.mp.chain_path, pki.mp.key_path),
                        "ecdsa": (ecdsa_chain, ecdsa_key)}
        nginx: Nginx | None = None
        if binary is None:
            res.skipped.append(("handshake", "nginx comparison skipped: nginx is not "
                                "installed (apt-get install nginx-light)"))
        rates: dict[tuple[str, str], list[float]] = {}
        cpu_ms: dict[tuple[str, str], list[float]] = {}
        ratios: dict[str, list[float]] = {k: [] for k in kinds}
        as_installed: dict[str, list[float]] = {k: [] for k in kinds}
        generator: list[float] = []
        errors: Counter[str] = Counter()
        first_errors: list[str] = []
        versions: dict[str, Counter[str]] = {"mp": Counter(), "bare": Counter(),
                                             "nginx": Counter(), "nginx_defaults": Counter()}
        with MpProcess(certs, ecdsa=(ecdsa_chain, ecdsa_key)) as mp:
            try:
                if binary is not None:
                    nginx = Nginx(binary, folder, client_ca, server_certs)
                servers: list[tuple[str, int, Callable[[str], int], Callable[[str], None]]] = []

                def mp_port(_kind: str) -> int:
                    return mp.mp_https

                def mp_select(kind: str) -> None:
                    mp.ask(kind)  # which certificate SNI hands out from now on

                def nothing_to_select(_kind: str) -> None:
                    pass

                def nginx_port(sessions: str) -> Callable[[str], int]:
                    assert nginx is not None
                    return lambda kind: nginx.ports[(kind, sessions)]

                servers.append(("mp", mp.pid, mp_port, mp_select))
                servers.append(("bare", mp.pid, mp.bare.__getitem__, nothing_to_select))
                if nginx is not None:
                    for sessions, name in (("cache", "nginx"), ("defaults", "nginx_defaults")):
                        servers.append((name, nginx.worker, nginx_port(sessions),
                                        nothing_to_select))

                async def run_all() -> None:
                    for kind in kinds:  # warm-up, untimed
                        for _name, _pid, port, select in servers:
                            select(kind)
                            await drive_handshakes(port(kind), tls[kind], seconds=0.3,
                                                   concurrency=sizes.handshake_concurrency)
                    for r in range(res.repeat):
                        for kind in kinds:
                            order = servers if r % 2 == 0 else list(reversed(servers))
                            got: dict[str, float] = {}
                            for name, pid, port, select in order:
                                select(kind)
                                cpu_before = cpu_seconds(pid)
                                load = await drive_handshakes(
                                    port(kind), tls[kind], seconds=sizes.handshake_seconds,
                                    concurrency=sizes.handshake_concurrency)
                                cpu_used = cpu_seconds(pid) - cpu_before
                                rate = load.done / load.wall_s
                                got[name] = rate
                                rates.setdefault((name, kind), []).append(rate)
                                cpu_ms.setdefault((name, kind), []).append(
                                    cpu_used * 1000 / max(1, load.done))
                                generator.append(load.cpu_s / load.wall_s)
                                errors.update({f"{name}: {k}": v for k, v in load.errors.items()})
                                first_errors.extend(load.first_errors[:1])
                                versions[name].update(load.versions)
                            if "nginx" in got:
                                ratios[kind].append(got["mp"] / got["nginx"])
                                as_installed[kind].append(got["mp"] / got["nginx_defaults"])

                run_loop(run_all())
            finally:
                if nginx is not None:
                    nginx.close()
    for kind in kinds:
        t = titles[kind]
        res.add("handshake", f"mp_hs_{kind}", f"MP mutual-TLS handshakes/s, {t}", "/s",
                rates[("mp", kind)], note=f"MP process, 1 core; {_versions(versions['mp'])}")
        if nginx is not None:
            res.add("handshake", f"nginx_hs_{kind}", f"nginx, same certificate, {t}", "/s",
                    rates[("nginx", kind)], note=f"1 worker; {_versions(versions['nginx'])}; "
                    "a session cache, as the MP")
            res.add("handshake", f"mp_vs_nginx_{kind}", f"MP / nginx, {t}", "x", ratios[kind],
                    Goal(">=", 0.75, ">= 0.75x"))
            res.add("handshake", f"nginx_defaults_hs_{kind}",
                    f"nginx as installed, same certificate, {t}", "/s",
                    rates[("nginx_defaults", kind)],
                    note=f"{_versions(versions['nginx_defaults'])}; 2 stateless tickets")
            res.add("handshake", f"mp_vs_nginx_defaults_{kind}",
                    f"MP / nginx as installed, {t}", "x", as_installed[kind])
        res.add("handshake", f"mp_cpu_ms_{kind}", f"MP CPU per handshake, {t}", "ms",
                cpu_ms[("mp", kind)])
        res.add("handshake", f"bare_hs_{kind}", f"bare Python TLS server, {t}", "/s",
                rates[("bare", kind)], note="the MP's TLS context and event loop, no HTTP")
        res.add("handshake", f"bare_cpu_ms_{kind}", f"bare Python TLS CPU per handshake, {t}",
                "ms", cpu_ms[("bare", kind)])
        if nginx is not None:
            res.add("handshake", f"nginx_cpu_ms_{kind}", f"nginx CPU per handshake, {t}", "ms",
                    cpu_ms[("nginx", kind)])
            res.add("handshake", f"bare_vs_nginx_cpu_{kind}",
                    f"bare Python TLS / nginx by CPU per handshake, {t}", "x",
                    [n / b for b, n in zip(cpu_ms[("bare", kind)], cpu_ms[("nginx", kind)],
                                           strict=True)],
                    note="the ceiling for a Python server on this stack")
            res.add("handshake", f"mp_vs_nginx_cpu_{kind}",
                    f"MP / nginx by server CPU per handshake, {t}", "x",
                    [n / m for m, n in zip(cpu_ms[("mp", kind)], cpu_ms[("nginx", kind)],
                                           strict=True)],
                    Goal(">=", 0.75, ">= 0.75x"),
                    note="independent of the generator's speed")
    busy = res.add("handshake", "generator_cpu", "load generator CPU use (1 = one core busy)",
                   "x", generator)
    if nginx is not None and busy.median > 0.85:
        busy.note = ("the generator kept its core busy: nginx's rate is a lower bound, the "
                     "CPU ratio is the fairer comparison")
    res.add("handshake", "handshake_errors", "handshake errors", "", [sum(errors.values())],
            Goal("<", 0.5, "none"), note="; ".join(first_errors[:2]))
