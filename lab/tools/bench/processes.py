"""The mock MP (with its CDP server) in a process of its own, and that process's side.

The parent starts it as ``python -m lab.tools.bench.processes _serve SPEC`` (SPEC: JSON with
the certificate folder and, for the handshake measurement, an ECDSA certificate) and talks to
it over stdin and stdout, one JSON line an answer: see :class:`MpProcess` and
:func:`serve_mp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import ssl
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, cast

from lab.errors import BenchError
from lab.protocols.network import LOOPBACK
from lab.tools.bench.machine import peak_rss_mib, run_loop, wait_or_kill
from lab.tools.bench.scenario import INTERNET, bench_scenario_text

MODULE = "lab.tools.bench.processes"
SERVE = "_serve"
"""The child's command word (internal to ``ibcm-lab bench``)."""


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _count_retrievals(retriever: Any) -> list[int]:
    """Count the HTTP GETs IIS's retriever makes to the CDP server (cache hits are not
    retrievals); a counter on the MP side works on any event loop."""
    count = [0]
    fetch = retriever._fetch

    async def counting(url: str) -> Any:
        got = await fetch(url)
        if got.http_status is not None:
            count[0] += 1
        return got

    retriever._fetch = counting
    return count


class _BareTls(asyncio.Protocol):
    """The floor of a Python TLS server: the MP's own TLS context on the same event loop,
    but no HTTP stack and no IIS: whatever arrives up to a blank line is answered with a
    fixed 200 and the connection closed."""

    ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 9\r\n"
              b"Connection: close\r\n\r\n<MPList/>")

    def __init__(self) -> None:
        self.seen = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.seen += data
        if b"\r\n\r\n" in self.seen or len(self.seen) > 65536:
            self.transport.write(self.ANSWER)
            self.transport.close()


async def serve_mp(spec: dict[str, Any]) -> int:
    """The child process: the lab's servers with the bench scenario staged, driven over
    stdin (``rsa`` / ``ecdsa``: which MP certificate SNI hands out; ``stats``; ``quit``).
    With an ECDSA certificate it also serves :class:`_BareTls` on one port per certificate
    (the handshake measurement's Python floor)."""
    from lab.pki.cache import PKICache
    from lab.run import stage_scenario
    from lab.scenario.loader import load_scenario_text
    from lab.servers.harness import NO_CHECK_TIME, server_session_cache, start_lab

    with tempfile.TemporaryDirectory(prefix="ibcm-lab-bench-mp-") as scratch:
        scenario = load_scenario_text(bench_scenario_text(), name="bench-mp")
        async with start_lab(scratch=scratch) as lab:
            deployment = await stage_scenario(lab, scenario, PKICache(spec["certs"]))
            crl_gets = _count_retrievals(lab.mp_state.retriever)
            names = list(lab.mp_state.contexts)
            contexts = {"rsa": dict(lab.mp_state.contexts)}
            if spec.get("ecdsa_chain"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(spec["ecdsa_chain"], spec["ecdsa_key"])
                ctx.verify_mode = ssl.CERT_OPTIONAL
                ctx.verify_flags |= NO_CHECK_TIME
                server_session_cache(ctx)
                ctx.load_verify_locations(cadata=b"".join(
                    ca.cert_pem for ca in deployment.pki.cas.values()).decode())
                contexts["ecdsa"] = dict.fromkeys(names, ctx)
            bare: dict[str, int] = {}
            if spec.get("ecdsa_chain"):
                loop = asyncio.get_running_loop()
                for kind, by_name in contexts.items():
                    server = await loop.create_server(_BareTls, LOOPBACK, 0, backlog=1024,
                                                      ssl=by_name[INTERNET.lower()])
                    bare[kind] = server.sockets[0].getsockname()[1]
            _say({"ready": True, "pid": os.getpid(), "mp_https": lab.ports.mp_https,
                  "mp_http": lab.ports.mp_http, "cdp": lab.ports.cdp, "bare": bare})
            while True:
                line = (await asyncio.to_thread(sys.stdin.readline)).strip()
                if not line or line == "quit":
                    break
                if line in contexts:
                    lab.bind_mp_contexts(contexts[line])
                    _say({"ok": True})
                elif line == "stats":
                    statuses = Counter(f"{r.status}.{r.substatus}" if r.substatus
                                       else str(r.status) for r in lab.mp_state.records)
                    times = os.times()
                    _say({"crl_gets": crl_gets[0],
                          "statuses": dict(statuses), "peak_rss_mib": peak_rss_mib(),
                          "cpu_s": times.user + times.system,
                          "cert_verdicts": len(lab.mp_state.cert_cache)})
                else:
                    _say({"error": f"unknown command {line!r}"})
    return 0


class MpProcess:
    """The mock MP (with its CDP server) in a process of its own.

    It runs as ``python -m lab.tools.bench.processes _serve SPEC``.
    """

    def __init__(self, certs: str, *, ecdsa: tuple[Path, Path] | None = None) -> None:
        spec: dict[str, Any] = {"certs": certs}
        if ecdsa is not None:
            spec["ecdsa_chain"], spec["ecdsa_key"] = str(ecdsa[0]), str(ecdsa[1])
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, SERVE, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        try:
            hello = self._read(60)
        except BaseException:
            self.close()
            raise
        self.pid = int(hello["pid"])
        self.mp_https = int(hello["mp_https"])
        self.cdp = int(hello["cdp"])
        self.bare: dict[str, int] = hello.get("bare", {})

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise BenchError(f"the MP process did not answer in {timeout:g} s"
                                 f"{self._errors()}")
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the MP process ended (exit {self.proc.wait()}){self._errors()}")
        message: dict[str, Any] = json.loads(line)
        return message

    def _errors(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f": {text.splitlines()[-1]}" if text else ""

    def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if "error" in answer:
            raise BenchError(f"the MP process: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            wait_or_kill(self.proc)
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> MpProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: Sequence[str]) -> int:
    """The child's entry point: ``_serve SPEC``."""
    if len(argv) != 2 or argv[0] != SERVE:
        print(f"usage: python -m {MODULE} {SERVE} SPEC (internal to ibcm-lab bench)",
              file=sys.stderr)
        return 2
    try:
        return run_loop(serve_mp(json.loads(argv[1])))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
