"""nginx beside the mock MP: finding it, and running it with one worker serving the MP's
certificates with ``ssl_verify_client on`` (the handshake measurement's yardstick)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from lab.errors import BenchError
from lab.protocols.network import LOOPBACK
from lab.tools.bench.machine import wait_or_kill
from lab.tools.bench.scenario import INTERNET, INTRA


def find_nginx() -> str | None:
    """The nginx binary: on the PATH or where packages put it; None when not installed."""
    found = shutil.which("nginx")
    if found is None:
        for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx",
                          "/usr/local/nginx/sbin/nginx"):
            if os.access(candidate, os.X_OK):
                return candidate
    return found


def nginx_version(binary: str | None) -> str | None:
    """``nginx -v``'s version (``1.24.0``), None without nginx."""
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ") or None


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (nginx's workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


NGINX_SESSIONS = {
    # As the MP keeps them: a server-side session cache, no stateless tickets.
    "cache": "ssl_session_cache shared:SSL:10m;\n        ssl_session_tickets off;",
    # nginx as installed: no cache, stateless TLS 1.3 tickets (OpenSSL's two per handshake).
    "defaults": "",
}


class Nginx:
    """nginx (one worker) serving the MP's certificates with ``ssl_verify_client on``: one
    port per certificate and session set-up (:data:`NGINX_SESSIONS`), ``return 200`` for
    every request. ``ports[(certificate, sessions)]``."""

    def __init__(self, binary: str, folder: Path, client_ca: Path,
                 certs: dict[str, tuple[Path, Path]]) -> None:
        self.folder = folder
        self.ports = {(name, sessions): free_port() for name in certs
                      for sessions in NGINX_SESSIONS}
        without = ""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            without = subprocess.run([binary, "-V"], capture_output=True, text=True,
                                     timeout=10).stderr
        temp_paths = "".join(
            f"    {module}_temp_path {folder}/{module};\n"
            for module in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            if f"--without-http_{module}_module" not in without)
        servers = "".join(f"""
    server {{
        listen {LOOPBACK}:{self.ports[(name, sessions)]} ssl backlog=1024;
        server_name {INTERNET} {INTRA};
        ssl_certificate {chain};
        ssl_certificate_key {key};
        ssl_client_certificate {client_ca};
        ssl_verify_client on;
        ssl_verify_depth 3;
        ssl_protocols TLSv1.2 TLSv1.3;
        {session_lines}
        location / {{
            default_type text/xml;
            return 200 "<MPList/>";
        }}
    }}
""" for name, (chain, key) in certs.items()
            for sessions, session_lines in NGINX_SESSIONS.items())
        conf = folder / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {folder}/access.log;
{temp_paths}    keepalive_timeout 0;
{servers}}}
""")
        self.proc = subprocess.Popen([binary, "-p", str(folder), "-c", str(conf), "-e",
                                      str(folder / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode().strip()
                raise BenchError(f"nginx did not start: {err}")
            try:
                for port in self.ports.values():
                    socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.close()
            raise BenchError("nginx did not listen within 15 s")
        workers = []
        for _ in range(100):
            workers = children_of(self.proc.pid)
            if workers:
                break
            time.sleep(0.05)
        self.worker = workers[0] if workers else self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            wait_or_kill(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
