"""CryptoAPI's LDAP retrieval of one ``ldap://`` CDP or AIA URL, over a real connection.

One TCP connection to the server playing the DC (or the URL's host), as Windows makes one
per URL: a bind, a search for the URL's object with the URL's scope, filter and attribute,
then an unbind. The PDUs are LDAPv3 (:mod:`lab.protocols.ldapwire`), over asyncio streams, in the
lab's one event loop. *Whether* the machine may connect at all was decided before, by the
simulated network (:mod:`lab.cryptoapi.retrieval`).

Windows binds as the computer account with Kerberos (sign and seal); the lab binds
anonymously, in clear, on loopback: the lab's model. A request's bytes depend only on the URL,
so they are encoded once and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from functools import lru_cache

from lab.errors import LdapProtocolError
from lab.protocols.ldapwire import (
    SIMULATED_DELAY_CONTROL,
    SUCCESS,
    Response,
    bind_request,
    decode_response,
    read_pdu,
    result_name,
    scope_value,
    search_request,
    unbind_request,
)

EXCHANGE_TIMEOUT = 10.0
"""Real seconds an exchange with the lab's own server may take before the lab gives up (a
safeguard; Windows' retrieval time-outs are simulated, never waited for)."""


@dataclass(frozen=True)
class LdapAnswer:
    """What one search brought back."""

    code: int
    """The SearchResultDone's result code (0 = success)."""
    diagnostic: str
    values: tuple[bytes, ...]
    """The values of the wanted attribute (of the first entry), empty when there was none."""
    entries: int
    delay_ms: int
    """The simulated time the server says it took (the lab's delay control), 0 otherwise."""

    @property
    def result(self) -> str:
        return result_name(self.code)


@lru_cache(maxsize=256)
def _requests(dn: str, attribute: str, scope: str, filter_text: str) -> tuple[bytes, bytes,
                                                                              bytes]:
    """Bind (message 1), search (2) and unbind (3) for one URL, encoded once."""
    attributes = (attribute,) if attribute else ()
    return (bind_request(1),
            search_request(2, dn, scope=scope_value(scope), filter_text=filter_text,
                           attributes=attributes),
            unbind_request(3))


def _wanted(entry: Response, attribute: str) -> tuple[bytes, ...]:
    name = attribute.split(";", 1)[0].lower()
    for description, values in entry.attributes:
        kind = description.split(";", 1)[0].lower()
        if (kind == name if name else kind not in ("objectclass", "cn")) and values:
            return values
    return ()


async def _expect(reader: asyncio.StreamReader, limit: int, message_id: int) -> Response:
    response = decode_response(await read_pdu(reader, limit))
    if response.message_id == 0 and response.op == "extendedResp":
        raise LdapProtocolError(f"the server disconnected: {response.result} "
                                f"{response.diagnostic}".rstrip())
    if response.message_id != message_id:
        raise LdapProtocolError(f"a response to message {response.message_id}, "
                                f"expected {message_id}")
    return response


async def _exchange(host: str, port: int, dn: str, attribute: str, scope: str,
                    filter_text: str, limit: int) -> LdapAnswer:
    bind, search, unbind = _requests(dn, attribute, scope, filter_text)
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        writer.write(bind)
        bound = await _expect(reader, 4096, 1)
        if bound.op != "bindResponse":
            raise LdapProtocolError(f"a {bound.op} in answer to a bind")
        if bound.code != SUCCESS:
            return LdapAnswer(bound.code, f"bind refused: {bound.diagnostic}", (), 0, 0)
        writer.write(search)
        values: tuple[bytes, ...] = ()
        entries = 0
        while True:
            response = await _expect(reader, limit, 2)
            if response.op == "searchResEntry":
                entries += 1
                if entries == 1:
                    values = _wanted(response, attribute)
            elif response.op == "searchResDone":
                break
            elif response.op != "searchResRef":
                raise LdapProtocolError(f"a {response.op} in answer to a search")
        delay = response.control(SIMULATED_DELAY_CONTROL)
        delay_ms = int(delay) if delay is not None and delay.isdigit() else 0
        writer.write(unbind)
        # The server closes the connection on an unbind (RFC 4511 §4.3): waiting for that
        # keeps the directory's log in step with the retrievals.
        await reader.read(1)
        return LdapAnswer(response.code, response.diagnostic, values, entries, delay_ms)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def ldap_search(host: str, port: int, dn: str, attribute: str, *, scope: str = "",
                      filter_text: str = "", limit: int) -> LdapAnswer:
    """Bind anonymously to ``host:port``, search ``dn`` for ``attribute``, unbind.

    ``limit`` caps a response PDU (the CRL with its envelope). Raises LdapProtocolError for
    an answer that is not LDAP (or a filter that does not parse), OSError when the connection
    fails, TimeoutError when the exchange takes longer than :data:`EXCHANGE_TIMEOUT`."""
    async with asyncio.timeout(EXCHANGE_TIMEOUT):
        try:
            return await _exchange(host, port, dn, attribute, scope, filter_text, limit)
        except asyncio.IncompleteReadError as e:
            raise LdapProtocolError("the server closed the connection mid-answer") from e


__all__ = ["LdapAnswer", "ldap_search"]
