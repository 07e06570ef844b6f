"""The MP's IIS log in the W3C extended format (``C:\\inetpub\\logs\\LogFiles\\W3SVC1``).

IIS's default daily file is ``u_exYYMMDD.log`` (UTF-8), stamped and rolled over in **UTC**,
with every time in UTC. Each file starts with the directives::

    #Software: Microsoft Internet Information Services 10.0
    #Version: 1.0
    #Date: 2026-11-29 19:27:05
    #Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip \
cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken

then one space-separated line per request, ``-`` for an empty field, spaces inside a value
written as ``+`` (``SMS+CCM+5.0``, reference §6.2 J), the status and substatus apart
(``403 4`` = 403.4) and ``sc-win32-status`` as an unsigned decimal (``2148204809`` =
0x800B0109).

``sc-win32-status`` is written only where a quoted IIS line gives that value for that status
(:data:`QUOTED_WIN32`, reference §6.2 J and §8.3). Elsewhere (403.13, 403.17, 403.4, ...) the
lab does not know what IIS writes: the field is ``0`` and a ``#Remark: Lab: ...`` directive
after ``#Fields`` says so, with the code the lab's own check gave. ``#Remark`` is a directive
of the W3C extended log format; log readers skip ``#`` lines.

``time-taken`` is the simulated time the answer took: 0, except when IIS had to wait out CRL
retrieval time-outs for the client certificate (an MP in a DMZ: 15000 per unreachable URL).
"""

from __future__ import annotations

import datetime as dt

from lab import codes
from lab.results.records import MpRecord

EOL = "\r\n"
SOFTWARE = "Microsoft Internet Information Services 10.0"
FIELDS = ("date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port",
          "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus",
          "sc-win32-status", "time-taken")


QUOTED_WIN32: frozenset[tuple[int, int, int]] = frozenset({
    (200, 0, 0),  # an IIS 8 default log (reference §6.2 J)
    (404, 0, 2),  # the same log: a missing file, ERROR_FILE_NOT_FOUND
    (401, 2, 5),  # the 500.19 blog's CCM_POST (reference §6.2 J)
    (500, 19, 126),  # the same blog's PROPFIND /CCM_Client
    (403, 7, 0),  # the CMG page's SITESIGNCERT line: client certificate required
    (403, 16, 2148204809),  # KB 2802568: CERT_E_UNTRUSTEDROOT (reference §8.3)
})
"""(sc-status, sc-substatus, sc-win32-status) as quoted IIS lines give them."""

REMARK = "#Remark: Lab: "
"""How the lab's remarks in a W3C file begin: the lab's model, not IIS's output."""


def win32_field(record: MpRecord) -> int:
    """The ``sc-win32-status`` the lab writes: the record's value where a quoted IIS line
    gives it for that status, else 0 (see the module docstring)."""
    value = record.win32_status & 0xFFFFFFFF
    return value if (record.status, record.substatus, value) in QUOTED_WIN32 else 0


def _label(record: MpRecord) -> str:
    return f"{record.status}.{record.substatus}" if record.substatus else str(record.status)


def remarks(records: list[MpRecord]) -> list[str]:
    """One ``#Remark: Lab:`` line per status whose ``sc-win32-status`` no quoted line gives."""
    lines: dict[str, str] = {}
    for record in records:
        value = record.win32_status & 0xFFFFFFFF
        if (record.status, record.substatus, value) in QUOTED_WIN32:
            continue
        label = _label(record)
        code = codes.lookup(str(value)) if value else None
        said = (f"; the lab's own check said 0x{value:08X}"
                + (f" ({code.name})" if code is not None else "") if value else "")
        lines.setdefault(label, f"{REMARK}sc-win32-status of the {label} lines is 0: no quoted "
                                f"IIS line gives its value{said}")
    return list(lines.values())


def file_name(day: dt.date) -> str:
    """``u_exYYMMDD.log``: IIS's daily W3C file with UTC rollover."""
    return f"u_ex{day:%y%m%d}.log"


def _value(text: str | None) -> str:
    """A W3C field: ``-`` when empty, spaces as ``+`` (IIS does), no control characters."""
    if text is None:
        return "-"
    text = "".join(ch if ch.isprintable() else "+" for ch in text.strip())
    return text.replace(" ", "+") or "-"


def _utc(time: dt.datetime) -> dt.datetime:
    if time.tzinfo is None:
        raise ValueError("an MP record needs an aware time")
    return time.astimezone(dt.UTC)


def format_record(record: MpRecord, *, server_ip: str) -> str:
    """One W3C line (no line ending)."""
    when = _utc(record.time)
    values = (
        f"{when:%Y-%m-%d}", f"{when:%H:%M:%S}", _value(server_ip), _value(record.method),
        _value(record.uri_stem), _value(record.uri_query), str(record.port), "-",
        _value(record.client_ip), _value(record.user_agent), "-", str(record.status),
        str(record.substatus), str(win32_field(record)), str(record.time_taken_ms),
    )
    return " ".join(values)


def format_w3c(records: list[MpRecord], *, server_ip: str) -> dict[str, str]:
    """The W3C file(s) for ``records``: ``{"u_exYYMMDD.log": content}``, one per UTC day,
    lines in record order. No records, no file (IIS creates the day's file on the first
    request)."""
    days: dict[dt.date, list[MpRecord]] = {}
    for record in records:
        days.setdefault(_utc(record.time).date(), []).append(record)
    files: dict[str, str] = {}
    for day, day_records in sorted(days.items()):
        first = _utc(day_records[0].time)
        lines = [f"#Software: {SOFTWARE}", "#Version: 1.0", f"#Date: {first:%Y-%m-%d %H:%M:%S}",
                 "#Fields: " + " ".join(FIELDS), *remarks(day_records)]
        lines += [format_record(r, server_ip=server_ip) for r in day_records]
        files[file_name(day)] = "".join(line + EOL for line in lines)
    return files


def parse_w3c(text: str) -> list[dict[str, str]]:
    """The entries of a W3C log, each a dict keyed by the ``#Fields`` directive in force.

    ValueError if an entry comes before any ``#Fields`` or has the wrong number of values.
    """
    fields: list[str] | None = None
    entries: list[dict[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith("#Fields:"):
                fields = line[len("#Fields:"):].split()
            continue
        if fields is None:
            raise ValueError(f"line {number}: an entry before the #Fields directive")
        values = line.split(" ")
        if len(values) != len(fields):
            raise ValueError(f"line {number}: {len(values)} values for {len(fields)} fields")
        entries.append(dict(zip(fields, values, strict=True)))
    return entries


__all__ = ["FIELDS", "QUOTED_WIN32", "REMARK", "SOFTWARE", "file_name", "format_record",
           "format_w3c", "parse_w3c", "remarks", "win32_field"]
