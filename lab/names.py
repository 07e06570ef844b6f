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
* :func:`is_wildcard_name`, :func:`wildcard_problem`, :func:`host_matches`: a certificate's
  DNS name with a wildcard, and whether it covers a host name (reference §3.6): ``*`` only as
  the whole left-most label, covering exactly one label, with at least two labels after it
  (``*.fabrikam.com`` covers ``mp.fabrikam.com``, not ``fabrikam.com`` nor
  ``a.b.fabrikam.com``; ``*.com`` and ``m*.fabrikam.com`` cover nothing).
* :func:`is_internal_name`: a name no public CA issues for since the CA/Browser Forum's
  deadline (single-label names and names under a TLD that is not in the public DNS, reference
  §3.7).

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


def is_wildcard_name(name: str) -> bool:
    """Whether ``name`` is a usable wildcard DNS name: ``*.`` then a DNS name of at least two
    labels (``*.fabrikam.com``; not ``*.com``, ``m*.fabrikam.com`` or ``a.*.fabrikam.com``)."""
    return wildcard_problem(name) is None


def wildcard_problem(name: str) -> str | None:
    """Why ``name`` (which contains ``*``) is no usable wildcard, or None when it is one."""
    if not name.startswith("*."):
        return ("a wildcard must be the whole left-most label ('*.fabrikam.com'); partial "
                "or inner wildcards such as 'm*.fabrikam.com' match nothing")
    rest = name[2:]
    if "*" in rest:
        return "only one '*', as the whole left-most label"
    if not is_dns_name(rest, allow_root_dot=True):
        return f"after '*.' expected a DNS host name, got {rest!r}"
    if "." not in rest.rstrip("."):
        return (f"'*.{rest}' would cover a whole top-level domain: a wildcard needs at least "
                "two labels after it")
    return None


def host_matches(host: str, name: str) -> bool:
    """Whether a certificate's DNS ``name`` covers ``host`` (case and a final dot aside):
    equal, or a usable wildcard covering exactly the host's left-most label."""
    host = host.lower().rstrip(".")
    name = name.lower().rstrip(".")
    if name == host:
        return True
    if "*" not in name or not is_wildcard_name(name):
        return False
    first, dot, parent = host.partition(".")
    return bool(first) and bool(dot) and first != "*" and parent == name[2:]


INTERNAL_TLDS: Final = frozenset({
    "local", "localdomain", "localhost", "internal", "lan", "corp", "home", "intranet",
    "private", "test", "example", "invalid", "mail"})
"""Top-level labels that are not in the public DNS root zone and that internal networks use
(RFC 6761/6762 special-use names, ICANN's undelegated collision strings, ``.internal``)."""


def is_internal_name(name: str) -> bool:
    """Whether ``name`` is an internal name in the CA/Browser Forum's sense: a single label, or
    a name under a top-level domain that the public DNS does not have (the lab's list:
    :data:`INTERNAL_TLDS`)."""
    name = name.lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    if "." not in name:
        return True
    return name.rsplit(".", 1)[1] in INTERNAL_TLDS


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
