"""What the servers recorded, as plain data: each request the mock MP answered (its IIS log),
each LDAP operation the lab's DC answered (the directory's log), and the MP's answer to one
step as the judge reads it.

The servers (:mod:`lab.servers`) fill these in; the log writers (:mod:`lab.logs`) and the
reports read them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class MpRecord:
    """One request the mock MP (or the CDP web server, its own IIS) answered: the fields an IIS
    W3C log line carries."""

    time: dt.datetime
    step: str | None
    """The lab's correlation id for the client step that sent it (``X-Lab-Step``)."""
    method: str
    uri_stem: str
    uri_query: str
    port: int
    client_ip: str
    user_agent: str
    host: str
    status: int
    substatus: int
    win32_status: int
    detail: str
    """Why the MP answered as it did (for explanations; not part of a real IIS log)."""
    time_taken_ms: int = 0
    """Simulated time the answer took: IIS's CRL retrieval time-outs for the client
    certificate (``time-taken`` in the W3C log)."""
    crl_problem: str = ""
    """Why IIS refused the client certificate's revocation status (not part of a real IIS
    log): ``revoked``, ``unreachable`` (no CRL could be retrieved), ``expired``,
    ``not_yet_valid`` or ``invalid`` (a CRL came but cannot be used); empty otherwise."""


@dataclass(frozen=True)
class DirectoryRecord:
    """One LDAP operation the lab's DC answered (or a PDU it refused), for the directory's
    log: the lab's own record, not a Windows log format."""

    time: dt.datetime
    connection: int
    """The server's number for the TCP connection (1, 2, ...)."""
    peer: str
    """``127.0.0.1:port`` of the client."""
    message_id: int
    operation: str
    """``bind``, ``search``, ``unbind``, ``abandon``, ``extended``, ``modify``, ``add``,
    ``delete``, ``modDN``, ``compare``, or ``malformed`` for a PDU that does not decode."""
    dn: str = ""
    scope: str = ""
    """``base``, ``one`` or ``sub`` (searches)."""
    filter: str = ""
    attributes: tuple[str, ...] = ()
    result: str = ""
    """The RFC 4511 result name (``success``, ``noSuchObject``, ...); empty for operations
    that get no response (unbind, abandon)."""
    entries: int = 0
    """Search: how many entries were returned."""
    detail: str = ""


@dataclass(frozen=True)
class MpAnswer:
    """What the MP's IIS log says about the requests of one step (status and substatus)."""

    status: int
    substatus: int
    win32_status: int
    detail: str
    simulated_ms: int = 0
    """Simulated time the MP spent (IIS's CRL retrievals for the client certificate)."""
    crl_problem: str = ""
    """As :attr:`MpRecord.crl_problem`."""

    @property
    def label(self) -> str:
        """``403.13``, or ``500`` when IIS gave no substatus."""
        return f"{self.status}.{self.substatus}" if self.substatus else str(self.status)


__all__ = ["DirectoryRecord", "MpAnswer", "MpRecord"]
