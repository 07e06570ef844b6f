"""``ibcm-lab serve SCENARIO``: the scenario's servers, up until Ctrl-C, for hands-on poking.

For each host the lab plays it prints the loopback port, a hosts-file entry, a ready ``curl``
command (with ``--resolve`` so the real FQDN is used for SNI and the name check) and an
``openssl s_client`` command (``-verify_hostname``: the name is checked, not only the chain)
for every client certificate of the scenario, plus the paths of the CA and client certificate
files. For the domain controller it prints an ``ldapsearch`` command (OpenLDAP's client) per
object of the directory, and a pipeline that writes the CRL's bytes to a file and compares
them with what the HTTP CDP serves.

The guide is a bash script: every label and note is a ``#`` line, every other line is a
command that works when pasted whole, and the hosts-file entry (``IP name # comment``) is the
one line meant for the hosts file instead.

:func:`serve_scenario` is the typed entry (``ibcm-lab serve`` calls it from
:mod:`lab.cli.serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives import serialization

from lab.clock import Clock
from lab.errors import UsageError
from lab.files import make_folders, safe_component, write_atomic
from lab.logs.stream import LogStream
from lab.names import printable
from lab.pki.background import build_pki_async
from lab.pki.build import BuiltPKI
from lab.pki.cache import PKICache
from lab.protocols.network import LOOPBACK, Network
from lab.scenario.loader import load_scenario
from lab.scenario.model import Scenario
from lab.servers.deployment import Deployment, Directory
from lab.servers.harness import RunningLab, start_lab

_LDAP_OBJECT_FILTER = {"certificaterevocationlist": "(objectClass=cRLDistributionPoint)",
                       "deltarevocationlist": "(objectClass=cRLDistributionPoint)",
                       "cacertificate": "(objectClass=certificationAuthority)"}
_LDAP_SUFFIX = {"certificaterevocationlist": ".ldap.crl", "deltarevocationlist": "+.ldap.crl",
                "cacertificate": ".ldap.crt"}


def _ldap_lines(directory: Directory, pki: BuiltPKI, lab: RunningLab, addr: str,
                loopback: int) -> list[str]:
    """``ldapsearch`` for each binary attribute of the directory, and a pipeline comparing
    its bytes with the HTTP CDP's (when an HTTP URL serves the same bytes)."""
    q = shlex.quote
    lines: list[str] = []
    for obj in directory.objects():
        cn = obj.dn.split(",", 1)[0].partition("=")[2] or "object"
        for name, values in obj.attributes.items():
            key = name.lower()
            if key not in _LDAP_OBJECT_FILTER or not values:
                continue
            search = (f"ldapsearch -x -H ldap://{addr}:{loopback} -b {q(obj.dn)} -s base -LLL "
                      f"-o ldif-wrap=no {q(_LDAP_OBJECT_FILTER[key])} {name}")
            lines.append(search)
            out = q(cn.replace(" ", "") + _LDAP_SUFFIX[key])
            to_file = f"{search} | sed -n {q(f's/^{name}:: //p')} | base64 -d > {out}"
            same = next((p for p in pki.publications if p.url.lower().startswith("http://")
                         and p.data == values[0]), None)
            http = None
            if same is not None:
                host, _, path = same.url[7:].partition("/")
                port = lab.hosts.get(host.split(":", 1)[0], 80)
                if port is not None:
                    name_only = host.split(":", 1)[0]
                    http = (f"curl -s --resolve {q(f'{name_only}:{port}:{addr}')} "
                            f"{q(f'http://{name_only}:{port}/{path}')}")
            if http is not None:
                lines += ["# the same bytes as over HTTP:",
                          f"{to_file} && {http} | cmp - {out} && echo identical"]
            else:
                lines += ["# the value's bytes to a file:", to_file]
    if lines:
        lines.append("# (ldapsearch -t writes each value to a file under /tmp instead)")
    return lines


def _write_public(folder: Path, name: str, data: bytes) -> Path:
    return write_atomic(folder / name, data)  # a planted symbolic link is refused


def connection_guide(scenario: Scenario, pki: BuiltPKI, lab: RunningLab, folder: Path,
                     bind: str) -> str:
    """The text ``serve`` prints: hosts, ports and ready commands, as a bash script (labels
    and notes on ``#`` lines; the hosts-file entries are the only lines that are not
    commands)."""
    make_folders(folder)
    every_ca = b"".join(ca.cert.public_bytes(serialization.Encoding.PEM)
                        for ca in pki.cas.values())
    ca_file = _write_public(folder, "lab-cas.pem", every_ca)
    lines = [f"# ibcm-lab serve: {scenario.name} ({scenario.info.title})",
             f"# Listening on {bind}. CA certificates: {ca_file}",
             f"# Logs of every request (IIS W3C, MP, LDAP): {folder / 'logs'}", ""]
    # Every certificate of every client, the good and the failing ones.
    certs = [(name, cert) for name, store in pki.stores.items() for cert in store]
    for _name, cert in certs:
        lines += [f"# Client certificate ({cert.label}): {cert.chain_path}",
                  f"# Client key (mode 0600, never served): {cert.key_path}"]
    if certs:
        lines.append("")
    addr = LOOPBACK if bind in ("0.0.0.0", "::", "") else bind
    q = shlex.quote
    # The host map keeps names in lower case; show them as the scenario spells them.
    spelled = {n.lower(): n for n in (scenario.mp.intranet_fqdn, scenario.mp.internet_fqdn)
               if n}
    for pub in pki.publications:
        if pub.url.lower().startswith("http://"):
            name = pub.url[7:].split("/", 1)[0].split(":", 1)[0]
            spelled.setdefault(name.lower(), name)
    if lab.deployment is not None:
        dc = lab.deployment.network.dc_host()
        spelled.setdefault(dc.lower(), dc)
    for (lower, port), loopback in sorted(lab.hosts.items().items()):
        host = spelled.get(lower, lower)
        if loopback == lab.ports.ldap:
            lines.append(f"# {host}:{port} -> {addr}:{loopback}   (LDAP: the domain "
                         "controller's directory, for ldap:/// and ldap://host/ URLs)")
            if lab.deployment is not None:
                lines += _ldap_lines(lab.deployment.directory, pki, lab, addr, loopback)
            lines.append("")
            continue
        lines += [f"# {host}:{port} -> {addr}:{loopback}",
                  "# hosts file entry:",
                  f"{addr} {host}  # ibcm-lab serve: the port still has to be {loopback}"]
        resolve = f"--resolve {q(f'{host}:{loopback}:{addr}')}"
        if port == 443:
            url = f"https://{host}:{loopback}/SMS_MP/.sms_aut?MPLIST"
            for name, cert in certs:
                chain, key = q(str(cert.chain_path)), q(str(cert.key_path))
                lines += [f"# client {name} (certificate {cert.label}):",
                          f"curl -i {resolve} --cacert {q(str(ca_file))} --cert {chain} "
                          f"--key {key} {q(url)}",
                          f"openssl s_client -connect {addr}:{loopback} -servername {host} "
                          f"-verify_hostname {host} -CAfile {q(str(ca_file))} -cert {chain} "
                          f"-key {key} -verify_return_error"]
            lines += ["# without a client certificate (IIS answers 403.7):",
                      f"curl -i {resolve} --cacert {q(str(ca_file))} {q(url)}"]
        elif port == 80 and host.lower() in {n.lower() for n in
                                             (scenario.mp.intranet_fqdn,
                                              scenario.mp.internet_fqdn or "")}:
            url = f"http://{host}:{loopback}/SMS_MP/.sms_aut?MPLIST"
            lines += ["# HTTP: 403.4 on an HTTPS-only site:",
                      f"curl -i {resolve} {q(url)}"]
        else:
            for pub in pki.publications:
                if pub.url.lower().startswith(f"http://{host.lower()}/"):
                    path = pub.url.split("/", 3)[3]
                    lines.append(f"curl -o {q(path.rsplit('/', 1)[-1])} {resolve} "
                                 f"{q(f'http://{host}:{loopback}/{path}')}")
        lines.append("")
    lines.append("# Press Ctrl-C to stop.")
    # a title or a name from the file never starts a line of its own (a line bash would run)
    return "\n".join(printable(line) for line in lines) + "\n"


SERVE_WINDOW = 1000
"""Entries of each server journal ``serve`` keeps in memory (the rest is in its log files)."""


@dataclass(frozen=True)
class ServeReport:
    """What ``serve`` served: the scenario, the address it bound and the guide it printed."""

    scenario: str
    bind: str
    guide: str
    stopped_by: int | None = None
    """The signal that stopped it (SIGINT, SIGTERM), None when ``for_seconds`` ran out."""


async def serve(scenario: Scenario, *, certs: str, host: str | None, for_seconds: float | None,
                out: TextIO) -> ServeReport:
    """Serve ``scenario`` until SIGINT or SIGTERM (or ``for_seconds``), printing the guide to
    ``out`` once the servers are up."""
    bind = host or LOOPBACK
    if bind != LOOPBACK:
        print(f"ibcm-lab: warning: binding {bind}: the lab's servers are reachable from "
              "other machines, not only from this one", file=sys.stderr)
    cache = PKICache(certs)
    clock = Clock()
    pki = await build_pki_async(scenario, clock, cache)  # Ctrl-C stops it between two keys
    deployment = Deployment(scenario=scenario, pki=pki, network=Network(scenario), clock=clock)
    stop = asyncio.Event()
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        stopped_by.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, int(sig))
    folder = Path(cache.root) / "serve" / safe_component(scenario.name)
    # Only the last SERVE_WINDOW entries of each journal stay in memory; every request is
    # written to the log files as it is answered (a client looping on the MP grows a file,
    # not the process).
    logs = LogStream(folder / "logs", server_ip=LOOPBACK if bind in ("0.0.0.0", "::", "")
                     else bind, timezone=scenario.info.timezone,
                     dc=deployment.network.dc_host())
    with tempfile.TemporaryDirectory(prefix="ibcm-lab-serve-") as scratch, \
            contextlib.closing(logs):
        async with start_lab(host=bind, scratch=scratch, journal_window=SERVE_WINDOW,
                             journal_sink=logs) as lab:
            await lab.stage(deployment)
            guide = connection_guide(scenario, pki, lab, folder, bind)
            out.write(guide)
            out.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), for_seconds)
    out.write("Stopped.\n")
    out.flush()
    return ServeReport(scenario.name, bind, guide, stopped_by[0] if stopped_by else None)


def serve_scenario(scenario_path: str | Path, *, certs: str, host: str | None = None,
                   for_seconds: float | None = None, out: TextIO = sys.stdout) -> ServeReport:
    """Load the scenario file and serve it (see :func:`serve`); UsageError for a
    ``for_seconds`` that is not positive."""
    scenario = load_scenario(scenario_path)
    if for_seconds is not None and for_seconds <= 0:
        raise UsageError(f"--for-seconds expects a positive number, got {for_seconds}")
    return asyncio.run(serve(scenario, certs=certs, host=host, for_seconds=for_seconds,
                             out=out))
