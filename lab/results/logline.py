"""One line of a ConfigMgr log, before it is formatted (CMTrace) and written.

Clients and the MP both produce these; :mod:`lab.logs` formats and writes them. The text is
the message only; ``time`` is the lab clock's instant (UTC), formatted later in the machine's
time zone.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class LogLine:
    file: str
    """The log file's name (``CcmMessaging.log``)."""
    component: str
    """The CMTrace ``component`` (``CcmMessaging``)."""
    text: str
    severity: int = 1
    """CMTrace ``type``: 1 informational, 2 warning, 3 error."""
    time: dt.datetime | None = None
    thread: int = 0
    source: str = ""
    """``file="..."`` of the CMTrace line; only filled where a verified sample shows it."""


def thread_id(machine: str, component: str) -> int:
    """A stable, plausible thread id for a component on a machine."""
    return 1000 + zlib.crc32(f"{machine}/{component}".encode()) % 9000
