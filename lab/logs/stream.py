"""Log files a long-running lab (``ibcm-lab serve``) writes as it goes.

``serve`` keeps only a window of recent entries in memory (see
:class:`lab.servers.state.Journal`); every entry is appended here the moment it is recorded,
in the formats ``run --out`` writes: the MP's IIS W3C log (``u_exYYMMDD.log``, UTC), its
``MP_RegistrationManager.log`` (CMTrace) and the DC's ``ibcm-lab-ldap.log`` (the lab's own
format). Files are created owner-only (0600) and opened once; memory does not grow with the
number of requests.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import IO, Any

from lab.clock import zone_info
from lab.logs import ldaplog, w3c
from lab.logs.cmtrace import EOL, format_line
from lab.results.logline import LogLine
from lab.results.records import DirectoryRecord, MpRecord

__all__ = ["LogStream"]

MP_LOG = "MP_RegistrationManager.log"
LDAP_LOG = "ibcm-lab-ldap.log"


class LogStream:
    """``stream(journal, entry)``: append ``entry`` of ``journal`` (``"records"``, ``"log"``
    or ``"directory_log"``) to its file under ``folder``."""

    def __init__(self, folder: Path, *, server_ip: str, timezone: str, dc: str) -> None:
        self.folder = Path(folder)
        self.server_ip = server_ip
        self.tz = zone_info(timezone)
        self.dc = dc
        self._files: dict[str, IO[str]] = {}

    def _open(self, name: str, header: str | None) -> IO[str]:
        f = self._files.get(name)
        if f is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / name
            fresh = not path.exists() or path.stat().st_size == 0
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            f = os.fdopen(fd, "w", encoding="utf-8", newline="")
            if fresh and header is not None:
                f.write(header)
            self._files[name] = f
        return f

    def __call__(self, journal: str, entry: Any) -> None:
        if journal == "records" and isinstance(entry, MpRecord):
            when = entry.time.astimezone(dt.UTC)
            header = "".join(line + EOL for line in (
                f"#Software: {w3c.SOFTWARE}", "#Version: 1.0",
                f"#Date: {when:%Y-%m-%d %H:%M:%S}", "#Fields: " + " ".join(w3c.FIELDS)))
            f = self._open(w3c.file_name(when.date()), header)
            f.write(w3c.format_record(entry, server_ip=self.server_ip) + EOL)
        elif journal == "log" and isinstance(entry, LogLine) and entry.time is not None:
            f = self._open(MP_LOG, None)
            f.write(format_line(entry, self.tz) + EOL)
        elif journal == "directory_log" and isinstance(entry, DirectoryRecord):
            header = (f"{ldaplog.HEADER}LDAP operations answered by the lab's domain "
                      f"controller {self.dc} (the lab's own log format, not a Windows log; "
                      f"times UTC, lab clock){EOL}")
            f = self._open(LDAP_LOG, header)
            f.write(ldaplog.format_record(entry) + EOL)
        else:
            return
        f.flush()  # a reader (tail -f) sees each request as it is answered

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
