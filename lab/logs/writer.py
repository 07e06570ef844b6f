"""Write every machine's logs of a run to disk, the way an admin would collect them.

``ibcm-lab run ... --out DIR`` calls :func:`write_logs`::

    DIR/<scenario>/<client>/CcmMessaging.log           CMTrace, in the scenario's time zone
    DIR/<scenario>/<client>/ccmsetup.log ...           one file per log the client wrote to
    DIR/<scenario>/<MP machine>/u_exYYMMDD.log         IIS W3C (UTC), one per UTC day
    DIR/<scenario>/<MP machine>/MP_RegistrationManager.log   CMTrace
    DIR/<scenario>/DC01/ibcm-lab-ldap.log               the DC's LDAP operations (the lab's format)
    DIR/<scenario>/<CDP web host>/u_exYYMMDD.log       the CRL web server's IIS W3C log (UTC):
                                                        ``404 11`` is request filtering refusing
                                                        a delta CRL's ``+``

``<scenario>`` is the scenario's name (its file stem; a second scenario of the same name in
one run gets ``-2``, ...), ``<MP machine>`` the first label of the MP's intranet FQDN. Only
files a machine actually wrote exist (a successful request writes no CCMHTTP line; a good site
refresh writes one ``Lab:`` line to ``LocationServices.log``, the lab's model, not product
output).

Every file is written to a temporary file in the same folder and renamed over the old one,
so no reader ever sees half a file. A run replaces its previous output for the same
scenario and machine: the files the lab wrote there last time (listed in the folder's
``.ibcm-lab-logs``) that this run does not write are removed. Nothing else in DIR is
touched.

Afterwards each failed step's ``log_refs`` names ``<path>:<line>`` (1-based, the physical
line of the entry) of the first error (type 3) line the step wrote in each file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from lab.clock import zone_info
from lab.errors import UsageError
from lab.files import FolderLock, make_folders, refuse_link, safe_component
from lab.logs.cmtrace import EOL, format_entries
from lab.logs.cmtrace import format_log as format_cmtrace
from lab.logs.ldaplog import FILE_NAME as LDAP_LOG
from lab.logs.ldaplog import format_log as format_ldap_log
from lab.logs.w3c import format_w3c
from lab.protocols.network import Network
from lab.results.logline import LogLine
from lab.results.records import MpRecord
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult

MP_SERVER_IP = "127.0.0.1"
"""``s-ip`` of the MP's W3C lines: the address the mock MP really listens on (everything in
the lab is loopback). A made-up LAN address could be mistaken for a real server's."""

MANIFEST = ".ibcm-lab-logs"
"""In each machine folder: the names of the files the lab wrote there (one a line)."""

MP_REGISTRATION_LOG = "MP_RegistrationManager.log"


def machine_name(fqdn: str) -> str:
    """A computer name from its FQDN: the first label (``IBCM-Intra.contoso.local`` ->
    ``IBCM-Intra``)."""
    return fqdn.split(".", 1)[0]


def scenario_folders(run: RunResult) -> list[str]:
    """The folder name of each scenario of ``run``, in order: its name, made unique
    (case-insensitively, for Windows and macOS file systems) with ``-2``, ``-3``, ..."""
    taken: set[str] = set()
    names: list[str] = []
    for result in run.scenarios:
        base = safe_component(result.scenario.name)  # a file stem may be '..' or hold '\n'
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        names.append(name)
    return names


@dataclass
class _Machine:
    folder: Path
    files: dict[str, str] = field(default_factory=dict)


def _client_logs(steps: list[StepResult], tz: dt.tzinfo, folder: Path
                 ) -> tuple[dict[str, str], dict[int, list[str]]]:
    """The client's log files, and each failed step's references (by position in ``steps``)."""
    by_file: dict[str, list[LogLine]] = {}
    first_error: dict[int, dict[str, int]] = {}
    for i, step in enumerate(steps):
        for line in step.log:
            lines = by_file.setdefault(line.file, [])
            lines.append(line)
            if line.severity == 3:
                first_error.setdefault(i, {}).setdefault(line.file, len(lines) - 1)
    files: dict[str, str] = {}
    starts: dict[str, list[int]] = {}
    for name, lines in by_file.items():
        entries = format_entries(lines, tz)
        files[name] = "".join(e + EOL for e in entries)
        numbers, current = [], 1
        for entry in entries:
            numbers.append(current)
            current += entry.count("\n") + 1
        starts[name] = numbers
    refs: dict[int, list[str]] = {}
    for i, errors in first_error.items():
        if steps[i].outcome == "fail":
            refs[i] = [f"{folder / name}:{starts[name][index]}" for name, index in errors.items()]
    return files, refs


def _reason(error: OSError, out: Path) -> str:
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a folder"
    reason = error.strerror or str(error)
    return f"{reason} ({error.filename})" if error.filename else reason


def _write_atomic(path: Path, data: bytes) -> None:
    refuse_link(path)  # a planted symbolic link is refused, never followed
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _previous(folder: Path) -> set[str]:
    try:
        text = (folder / MANIFEST).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return set()
    # Only plain names: a manifest never makes the lab delete outside its folder.
    return {n for n in text.splitlines() if n and "/" not in n and "\\" not in n
            and n not in (".", "..", MANIFEST)}


def _write_machine(machine: _Machine) -> list[Path]:
    folder = machine.folder
    stale = _previous(folder) - set(machine.files)
    written: list[Path] = []
    if machine.files:
        make_folders(folder)
        for name, content in machine.files.items():
            path = folder / name
            _write_atomic(path, content.encode("utf-8"))
            written.append(path)
    for name in sorted(stale):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    if machine.files:
        _write_atomic(folder / MANIFEST, "".join(n + "\n" for n in machine.files).encode())
    elif stale:
        with contextlib.suppress(FileNotFoundError):
            (folder / MANIFEST).unlink()
    return written


def _machines(result: ScenarioResult, folder: Path) -> tuple[list[_Machine], list[tuple[
        StepResult, list[str]]]]:
    scenario = result.scenario
    tz = zone_info(scenario.info.timezone)
    machines: dict[str, _Machine] = {}

    def machine(name: str) -> _Machine:
        # One folder per computer name (case-insensitive, as on Windows).
        return machines.setdefault(name.lower(), _Machine(folder / name))

    refs: list[tuple[StepResult, list[str]]] = []
    for client in result.clients:
        target = machine(client.name)
        files, step_refs = _client_logs(client.steps, tz, target.folder)
        target.files.update(files)
        refs += [(client.steps[i], r) for i, r in step_refs.items()]
    mp = machine(machine_name(scenario.mp.intranet_fqdn))
    mp.files.update(format_w3c(result.mp_records, server_ip=MP_SERVER_IP))
    if result.mp_log:
        mp.files[MP_REGISTRATION_LOG] = format_cmtrace(result.mp_log, tz)
    # The CDP web server: one IIS per host name (ca01, pki, ...), each with its W3C log.
    by_host: dict[str, list[MpRecord]] = {}
    for record in result.cdp_records:
        host = (record.host or "").rsplit(":", 1)[0] if record.host else ""
        if host:
            by_host.setdefault(machine_name(host), []).append(record)
    for name, records in by_host.items():
        web = machine(name)
        for file_name, content in format_w3c(records, server_ip=MP_SERVER_IP).items():
            web.files[file_name] = web.files.get(file_name, "") + content
    if result.directory_log:
        dc = Network(scenario).dc_host()
        machine(machine_name(dc)).files[LDAP_LOG] = format_ldap_log(result.directory_log, dc)
    return list(machines.values()), refs


def write_logs(run: RunResult, out: Path, lock_wait: float = 60.0) -> list[Path]:
    """Write the logs of every scenario of ``run`` under ``out`` (see the module docstring),
    fill failed steps' ``log_refs``, and return the paths written.

    UsageError (exit 2) if ``out`` or a folder under it cannot be created or written.
    """
    out = Path(out)
    written: list[Path] = []
    try:
        make_folders(out)
        # One run at a time writes the folder: two runs on it take turns, never mixing files.
        with FolderLock(out, wait=lock_wait):
            for result, name in zip(run.scenarios, scenario_folders(run), strict=True):
                machines, refs = _machines(result, out / name)
                for machine in machines:
                    written += _write_machine(machine)
                for step, step_refs in refs:
                    step.log_refs.extend(r for r in step_refs if r not in step.log_refs)
    except OSError as e:
        raise UsageError(f"cannot write the logs to {out}: {_reason(e, out)}") from e
    return written


__all__ = ["LDAP_LOG", "MANIFEST", "MP_REGISTRATION_LOG", "MP_SERVER_IP", "machine_name",
           "scenario_folders", "write_logs"]
