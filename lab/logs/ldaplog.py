"""The lab's DC request log: one line per LDAP operation the directory answered.

This is the **lab's own format**, not a Windows log (a real DC logs no such file by default;
its closest relative is the Directory Service event log with field engineering diagnostics).
It is shaped after the access log OpenLDAP's slapd writes, which LDAP people read at a glance::

    # Lab: LDAP operations answered by the lab's domain controller DC01.contoso.local ...
    2026-03-01 15:00:00.120Z conn=1 from=127.0.0.1:43704 msg=1 BIND dn="" result=success ...
    2026-03-01 15:00:00.120Z conn=1 from=127.0.0.1:43704 msg=2 SEARCH base="CN=Contoso-CA,..."
        scope=base filter="(objectClass=cRLDistributionPoint)" attrs=certificateRevocationList
        result=success entries=1

(one line each), times in UTC from the lab clock, CRLF line ends like the other log files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from lab.results.records import DirectoryRecord

EOL = "\r\n"
FILE_NAME = "ibcm-lab-ldap.log"
"""In the DC's folder of ``--out`` (``DIR/<scenario>/DC01/``)."""
HEADER = "# Lab: "


def _quoted(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_record(record: DirectoryRecord) -> str:
    """One record as one line (no line end)."""
    when = record.time.astimezone(dt.UTC)
    parts = [f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d}Z",
             f"conn={record.connection}", f"from={record.peer}", f"msg={record.message_id}",
             record.operation.upper()]
    if record.operation in ("bind", "search") or record.dn:
        parts.append(f"{'base' if record.operation == 'search' else 'dn'}={_quoted(record.dn)}")
    if record.operation == "search":
        parts += [f"scope={record.scope}", f"filter={_quoted(record.filter)}",
                  "attrs=" + (",".join(record.attributes) or "*")]
    if record.result:
        parts.append(f"result={record.result}")
    if record.operation == "search":
        parts.append(f"entries={record.entries}")
    if record.detail:
        parts.append(f"({record.detail})" if record.detail.isprintable()
                     else _quoted(record.detail))
    return " ".join(parts)


def format_log(records: Iterable[DirectoryRecord], dc: str) -> str:
    """The whole file: a header line naming the DC, then one line per record."""
    lines = [f"{HEADER}LDAP operations answered by the lab's domain controller {dc} "
             "(the lab's own log format, not a Windows log; times UTC, lab clock)"]
    lines += [format_record(r) for r in records]
    return "".join(line + EOL for line in lines)


__all__ = ["FILE_NAME", "format_log", "format_record"]
