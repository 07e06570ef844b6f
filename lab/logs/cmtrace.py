"""CMTrace (CCM) log format: what ConfigMgr clients and the MP write in ``%WinDir%\\CCM\\Logs``.

One entry (reference §7.1)::

    <![LOG[message]LOG]!><time="HH:MM:SS.mmm+BBB" date="MM-DD-YYYY" component="CcmMessaging" \
context="" type="3" thread="1402" file="">

* ``time`` is the machine's local time with milliseconds, followed by the **Windows
  time-zone bias** in minutes, where UTC = local time + bias (reference §7.2): UTC ``+000``,
  JST ``-540``, PST ``+480``, CEST ``-120``. It is the opposite sign of the usual UTC offset.
* ``date`` is zero-padded ``MM-DD-YYYY``; ``type`` 1 informational, 2 warning, 3 error;
  ``thread`` decimal; ``file`` the source file and line (empty where no verified sample
  shows one).
* A message may span several lines inside ``<![LOG[...]LOG]!>``.

Files use Windows line endings (``\\r\\n``), also inside multi-line messages, and UTF-8
without a byte order mark. ConfigMgr writes CRLF; CMTrace and OneTrace read it (whether
CMTrace also accepts bare LF is not in the lab's sources, so the lab does not rely on it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

from lab.names import printable
from lab.results.logline import LogLine

EOL = "\r\n"
"""The line ending of every log file the lab writes."""

CMTRACE_LINE = re.compile(
    r'<!\[LOG\[(?P<message>(?:(?!<!\[LOG\[).)*?)\]LOG\]!>'
    r'<time="(?P<time>\d{2}:\d{2}:\d{2}\.\d{3})(?P<bias>[+-]\d{3})" '
    r'date="(?P<date>\d{2}-\d{2}-\d{4})" '
    r'component="(?P<component>[^"\r\n]*)" '
    r'context="(?P<context>[^"\r\n]*)" '
    r'type="(?P<type>[123])" '
    r'thread="(?P<thread>\d+)" '
    r'file="(?P<file>[^"\r\n]*)">',
    re.DOTALL,
)
"""One CMTrace entry (the message may contain line breaks, not another ``<![LOG[``)."""

_FIELDS = ("message", "time", "date", "bias", "component", "context", "type", "thread", "file")


def windows_bias(local: dt.datetime) -> int:
    """The Windows bias in minutes of an aware local time: UTC = local + bias."""
    offset = local.utcoffset()
    if offset is None:
        raise ValueError("a CMTrace time needs a time zone")
    return -round(offset.total_seconds() / 60)


def format_bias(bias: int) -> str:
    """``+000``, ``-540``, ``+480``: sign and three digits."""
    return f"{'+' if bias >= 0 else '-'}{abs(bias):03d}"


def _normalise_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", EOL)


_MARKERS = (("]LOG]!>", "]LOG]!\\x3e"), ("<![LOG[", "<!\\x5bLOG["))
"""The delimiters of an entry: a value that carries one (a URL, a certificate field, a name
from a scenario file) must not end the entry early or start one of its own."""


def safe_message(text: str) -> str:
    """``text`` as a CMTrace message can carry it: line breaks kept (an entry may span lines),
    every other control character escaped (:func:`lab.names.printable`), and the entry's own
    delimiters escaped so that no value forges an entry."""
    text = printable(text.replace("\r\n", "\n").replace("\r", "\n"), keep="\n\t")
    for marker, escaped in _MARKERS:
        text = text.replace(marker, escaped)
    return text


def format_line(line: LogLine, tz: dt.tzinfo) -> str:
    """One CMTrace entry for ``line``, its time shown in the time zone ``tz``.

    Line breaks inside the message become ``\\r\\n``; the entry itself has no line ending.
    """
    if line.time is None:
        raise ValueError(f"log line without a time: {line.text!r}")
    if line.time.tzinfo is None:
        raise ValueError(f"log line with a naive time: {line.text!r}")
    if line.severity not in (1, 2, 3):
        raise ValueError(f"CMTrace type must be 1, 2 or 3, got {line.severity}")
    local = line.time.astimezone(tz)
    clock = f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"
    return (f"<![LOG[{_normalise_breaks(safe_message(line.text))}]LOG]!>"
            f"<time=\"{clock}{format_bias(windows_bias(local))}\" "
            f"date=\"{local:%m-%d-%Y}\" component=\"{line.component}\" context=\"\" "
            f"type=\"{line.severity}\" thread=\"{line.thread}\" file=\"{line.source}\">")


def _with_times(lines: list[LogLine]) -> list[LogLine]:
    """Lines without a time take the nearest earlier (else later) line's time."""
    known = [ln.time for ln in lines if ln.time is not None]
    if len(known) == len(lines):
        return lines
    if not known:
        raise ValueError("no log line has a time")
    out: list[LogLine] = []
    last = known[0]
    for ln in lines:
        if ln.time is None:
            ln = LogLine(ln.file, ln.component, ln.text, ln.severity, last, ln.thread, ln.source)
        last = ln.time or last
        out.append(ln)
    return out


def format_entries(lines: Iterable[LogLine], tz: dt.tzinfo) -> list[str]:
    """Each line as one CMTrace entry (no line endings added)."""
    return [format_line(ln, tz) for ln in _with_times(list(lines))]


def format_log(lines: Iterable[LogLine], tz: dt.tzinfo) -> str:
    """A whole log file: one entry per line, each ended by ``\\r\\n``."""
    return "".join(entry + EOL for entry in format_entries(lines, tz))


def parse_line(text: str) -> dict[str, str]:
    """Read one entry back: message, time, date, bias, component, context, type, thread,
    file (all as written). ValueError if ``text`` is not exactly one CMTrace entry."""
    match = CMTRACE_LINE.fullmatch(text.rstrip("\r\n"))
    if match is None:
        raise ValueError(f"not a CMTrace line: {text[:120]!r}")
    return {k: match.group(k) for k in _FIELDS}


def parse_log(text: str) -> list[dict[str, str]]:
    """Every entry of a CMTrace file, each with ``line`` (1-based physical line it starts
    on). ValueError if anything but entries and ``\\r\\n`` line endings is in the file."""
    entries: list[dict[str, str]] = []
    pos = 0
    line_no = 1
    while pos < len(text):
        match = CMTRACE_LINE.match(text, pos)
        if match is None:
            raise ValueError(f"line {line_no}: not a CMTrace entry: {text[pos:pos + 120]!r}")
        entry = {k: match.group(k) for k in _FIELDS}
        entry["line"] = str(line_no)
        entries.append(entry)
        if not text.startswith(EOL, match.end()):
            raise ValueError(f"line {line_no}: entry not ended by CRLF")
        line_no += match.group(0).count("\n") + 1
        pos = match.end() + len(EOL)
    return entries


def entry_utc(entry: dict[str, str]) -> dt.datetime:
    """The UTC instant of a parsed entry: local time + bias."""
    local = dt.datetime.strptime(f"{entry['date']} {entry['time']}", "%m-%d-%Y %H:%M:%S.%f")
    return (local + dt.timedelta(minutes=int(entry["bias"]))).replace(tzinfo=dt.UTC)


__all__ = ["CMTRACE_LINE", "EOL", "entry_utc", "format_bias", "format_entries", "format_line",
           "format_log", "parse_line", "parse_log", "safe_message", "windows_bias"]
