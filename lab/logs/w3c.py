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
(``403 4`` = 403.4) and ``sc-win32-status`` as an unsigned decimal (``2148081683`` =
0x80092013).

``time-taken`` is the simulated time the answer took: 0, except when IIS had to wait out CRL
retrieval time-outs for the client certificate (an MP in a DMZ: 15000 per unreachable URL).
"""

from __future__ import annotations

import datetime as dt

from lab.results.records import MpRecord

EOL = "\r\n"
SOFTWARE = "Microsoft Internet Information Services 10.0"
FIELDS = ("date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port",
          "cs-username", "c-ip", "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus",
          "sc-win32-status", "time-taken")


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
        str(record.substatus), str(record.win32_status & 0xFFFFFFFF), str(record.time_taken_ms),
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
                 "#Fields: " + " ".join(FIELDS)]
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


__all__ = ["FIELDS", "SOFTWARE", "file_name", "format_record", "format_w3c",
           "parse_w3c"]
