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
    """Whether ``url`` is printable ASCII without spaces, as a CDP or AIA URL must be."""
    return url.isascii() and all(ord(c) > 0x20 for c in url)
