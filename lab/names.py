"""Names the lab accepts: host names, ccmsetup host values, site codes, domains, URL text.

One home for each rule. The scenario loader, the ccmsetup parser and its linter, check-cert and
the simulated network all ask here, so a name one of them accepts is never refused by another.

* :func:`is_dns_name`: an RFC 1123 host name (letters, digits, ``-``; labels of 1 to 63
  characters, 253 in all). A certificate's SAN may end in a dot (``allow_root_dot``).
* :func:`is_ccm_host`: what ccmsetup takes as a host in ``SMSMP``, ``CCMHOSTNAME``,
  ``SMSMPLIST``... (NetBIOS names allow ``_``; no port, no path).
* :func:`is_site_code`: a ConfigMgr site code, three letters or digits.
* :func:`in_domain`: ``host`` is ``domain`` or a name under it (case-insensitive, trailing dot
  ignored).
* :func:`is_printable_url`: a URL as a certificate carries it: printable ASCII, no spaces
  (anything else is percent-encoded).
* :func:`printable`: any value from a file the user did not write (a title, a file name, a
  certificate field, a ccmsetup line), made safe for a terminal, an HTML page or a log line:
  control characters are shown escaped, never interpreted, and one value stays on one line.

Imports nothing from the lab: every layer may use it.
"""

from __future__ import annotations

import re
from typing import Final

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME: Final = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
CCM_HOST: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
SITE_CODE: Final = re.compile(r"[A-Za-z0-9]{3}")


def is_dns_name(name: str, *, allow_root_dot: bool = False) -> bool:
    """Whether ``name`` is a DNS host name; with ``allow_root_dot`` a final ``.`` is allowed."""
    if allow_root_dot and name.endswith(".") and len(name) > 1:
        name = name[:-1]
    return DNS_NAME.fullmatch(name) is not None


def is_ccm_host(host: str) -> bool:
    """Whether ccmsetup takes ``host`` as a management point host name."""
    return CCM_HOST.fullmatch(host) is not None


def is_site_code(code: str) -> bool:
    """Whether ``code`` is a ConfigMgr site code (three letters or digits)."""
    return SITE_CODE.fullmatch(code) is not None


def in_domain(host: str, domain: str | None) -> bool:
    """Whether ``host`` is ``domain`` or a name under it."""
    if not domain:
        return False
    host = host.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def is_printable_url(url: str) -> bool:
    """Whether ``url`` is printable ASCII without spaces, as a CDP or AIA URL must be (DEL,
    0x7F, is a control character, not printable)."""
    return url.isascii() and all(0x20 < ord(c) < 0x7F for c in url)


_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a",
                         "\b": "\\b", "\f": "\\f", "\v": "\\v"}
_BIDI: Final = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                         "\u2066\u2067\u2068\u2069")
"""Bidirectional controls: they reorder what a terminal shows (a name that reads backwards)."""


def _unsafe(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or c in _BIDI


def printable(value: object, *, keep: str = "") -> str:
    """``value`` as text that is safe to show: every control character (C0, DEL, C1, the
    Unicode line and paragraph separators, bidirectional controls) escaped the way ``git``
    quotes a file name (``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``), so that no escape sequence
    reaches a terminal and one value never spans lines. Characters in ``keep`` (``"\\n"`` for
    a text that may have several lines) are left as they are. Everything else, non-ASCII
    letters included, is unchanged."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and text.isascii():
        return text
    out: list[str] = []
    for c in text:
        if not _unsafe(c) or c in keep:
            out.append(c)
        elif c in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[c])
        elif ord(c) <= 0xFF:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)
