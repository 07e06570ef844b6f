"""Stage 2 rules about the management points: ``SMSMP``, ``SMSMPLIST``, ``CCMHOSTNAME``
(with ``CCMALWAYSINF``) and ``/mp``. One function per rule, each returning at most one
finding; :data:`lab.configmgr.lint.rules.RULES` puts them in order."""

from __future__ import annotations

import re

from lab.configmgr.ccmsetup import CcmsetupCommand, MpAddress, ccmhostname_problem
from lab.configmgr.lint.fixes import Arg, Fix, Pending, find_arg, setter
from lab.configmgr.lint.report import SiteContext
from lab.configmgr.lint.shared import CMG_PATH_RE, URLISH_RE, same_host
from lab.configmgr.lint.sources import (
    SRC_ALWAYSINF,
    SRC_CCMHOSTNAME,
    SRC_MISSING_HOSTNAME,
    SRC_MP,
    SRC_SMSMP,
    SRC_SMSMPLIST,
)

__all__ = [
    "ccmhostname_host",
    "ccmhostname_path",
    "ccmhostname_port",
    "ccmhostname_scheme",
    "missing_ccmhostname",
    "mp_cmg_without_https",
    "mp_https_not_cmg",
    "smsmp_host_mismatch",
    "smsmp_without_https",
    "smsmplist_without_https",
]


# --------------------------------------------------------------------------------------------
# SMSMP, SMSMPLIST
# --------------------------------------------------------------------------------------------


def smsmp_without_https(args: list[Arg], cmd: CcmsetupCommand,
                        site: SiteContext) -> Pending | None:
    smsmp = cmd.smsmp
    if smsmp is None or not site.https_only or smsmp.https:
        return None
    good = f"https://{smsmp.host}"
    was = "http://" if smsmp.scheme == "http" else "no scheme"
    return Pending(
        "error", "smsmp-without-https",
        f"SMSMP={smsmp.raw} has {was} but the MP accepts HTTPS only: \"prefix the "
        "management point name with https://\"; the client first posts over HTTP and "
        "IIS answers 403.4 (SSL required)",
        f"write SMSMP={good}", SRC_SMSMP,
        setter("SMSMP", good))


def smsmplist_without_https(args: list[Arg], cmd: CcmsetupCommand,
                            site: SiteContext) -> Pending | None:
    if not cmd.smsmplist or not site.https_only:
        return None
    bad = [e for e in cmd.smsmplist if not e.https]
    if not bad:
        return None
    fixed = ";".join(f"https://{e.host}" for e in cmd.smsmplist)
    return Pending(
        "error", "smsmplist-without-https",
        f"SMSMPLIST entries {', '.join(e.raw for e in bad)} lack https:// but the MPs "
        "accept HTTPS only; the https:// rule applies to every entry",
        f"write SMSMPLIST={fixed}", SRC_SMSMPLIST,
        setter("SMSMPLIST", fixed))


def smsmp_host_mismatch(args: list[Arg], cmd: CcmsetupCommand,
                        site: SiteContext) -> Pending | None:
    smsmp = cmd.smsmp
    if smsmp is None or not site.intranet_fqdn or same_host(smsmp.host, site.intranet_fqdn):
        return None
    scheme = "https://" if site.https_only or smsmp.https else (
        "http://" if smsmp.scheme == "http" else "")
    good = scheme + site.intranet_fqdn
    extra = ""
    if site.internet_fqdn and same_host(smsmp.host, site.internet_fqdn):
        extra = " (that is the internet FQDN, which belongs in CCMHOSTNAME)"
    return Pending(
        "warning", "smsmp-host-mismatch",
        f"SMSMP names {smsmp.host}{extra}, not the site's intranet MP "
        f"{site.intranet_fqdn}: SMSMP is the MP the new client talks to first, on the "
        "intranet",
        f"write SMSMP={good} (ignore this if {smsmp.host} is another MP of the site)",
        SRC_SMSMP, setter("SMSMP", good))


# --------------------------------------------------------------------------------------------
# CCMHOSTNAME, CCMALWAYSINF
# --------------------------------------------------------------------------------------------


def _internet_fix(site: SiteContext) -> tuple[str, Fix | None]:
    internet = site.internet_fqdn
    set_internet: Fix | None = setter("CCMHOSTNAME", internet) if internet else None
    fix_internet = f"write CCMHOSTNAME={internet}" if internet else \
        "write CCMHOSTNAME=<internet MP FQDN> (pass --internet-fqdn for the corrected line)"
    return fix_internet, set_internet


def _hostname_parts(value: str) -> re.Match[str] | None:
    return URLISH_RE.fullmatch(value)


def _rebuild_ccmhostname(a: list[Arg], *, keep_scheme: bool, keep_port: bool,
                         keep_path: bool) -> None:
    found = find_arg(a, "prop", "CCMHOSTNAME")
    if found is None or found.value is None:
        return
    parts = _hostname_parts(found.value)
    if parts is None:  # pragma: no cover
        return
    new = ""
    if keep_scheme and parts.group("scheme"):
        new += parts.group("scheme") + "://"
    new += parts.group("host")
    if keep_port and parts.group("port") is not None:
        new += ":" + parts.group("port")
    if keep_path and parts.group("path"):
        new += parts.group("path")
    found.set(new)


def missing_ccmhostname(args: list[Arg], cmd: CcmsetupCommand,
                        site: SiteContext) -> Pending | None:
    if cmd.ccmhostname is not None:
        return None
    fix_internet, set_internet = _internet_fix(site)
    if cmd.always_internet:
        return Pending(
            "error", "alwaysinf-without-ccmhostname",
            "CCMALWAYSINF=1 without CCMHOSTNAME: an always-internet client never talks to "
            "the intranet, so it can learn no internet MP; use it with CCMHOSTNAME",
            fix_internet, SRC_ALWAYSINF, set_internet)
    if site.internet_fqdn:
        return Pending(
            "info", "missing-ccmhostname",
            f"CCMHOSTNAME is not given: the client learns the internet MP {site.internet_fqdn} "
            "at its first site refresh on the intranet, but one that goes to the internet "
            "before that refresh finds no internet MP",
            fix_internet, SRC_MISSING_HOSTNAME, set_internet)
    return None


def ccmhostname_scheme(args: list[Arg], cmd: CcmsetupCommand,
                       site: SiteContext) -> Pending | None:
    value = cmd.ccmhostname
    m = _hostname_parts(value) if value is not None else None
    if value is None or m is None or not m.group("scheme"):
        return None
    return Pending(
        "error", "ccmhostname-scheme",
        f"CCMHOSTNAME={value} has the scheme {m.group('scheme')}://: CCMHOSTNAME is the "
        "internet MP's FQDN (even a CMG value is written without https://), and the client "
        "builds its URLs from it",
        "remove the scheme", SRC_CCMHOSTNAME,
        lambda a: _rebuild_ccmhostname(a, keep_scheme=False, keep_port=True, keep_path=True))


def ccmhostname_path(args: list[Arg], cmd: CcmsetupCommand,
                     site: SiteContext) -> Pending | None:
    value = cmd.ccmhostname
    m = _hostname_parts(value) if value is not None else None
    path = m.group("path") if m is not None else None
    if not path or CMG_PATH_RE.match(path):
        return None
    what = "a trailing slash" if path == "/" else f"the path {path}"
    return Pending(
        "error", "ccmhostname-path",
        f"CCMHOSTNAME={value} has {what}: it must be the internet MP's FQDN alone (only "
        "a CMG value carries a path, /CCM_Proxy_MutualAuth/<id>)",
        "remove everything after the host name", SRC_CCMHOSTNAME,
        lambda a: _rebuild_ccmhostname(a, keep_scheme=True, keep_port=True, keep_path=False))


def ccmhostname_port(args: list[Arg], cmd: CcmsetupCommand,
                     site: SiteContext) -> Pending | None:
    value = cmd.ccmhostname
    m = _hostname_parts(value) if value is not None else None
    if m is None or m.group("port") is None:
        return None
    return Pending(
        "warning", "ccmhostname-port",
        f"CCMHOSTNAME={value} has a port: it must be the FQDN alone; the HTTPS port "
        "comes from CCMHTTPSPORT (default 443)",
        "remove the port (use CCMHTTPSPORT for a port other than 443)", SRC_CCMHOSTNAME,
        lambda a: _rebuild_ccmhostname(a, keep_scheme=True, keep_port=False, keep_path=True))


def ccmhostname_host(args: list[Arg], cmd: CcmsetupCommand,
                     site: SiteContext) -> Pending | None:
    """The host of CCMHOSTNAME (not for a CMG value): a host name, the site's internet MP."""
    value = cmd.ccmhostname
    m = _hostname_parts(value) if value is not None else None
    if value is None or m is None:  # the pattern matches every string
        return None
    host, path = m.group("host"), m.group("path")
    if path and CMG_PATH_RE.match(path):
        return None
    internet = site.internet_fqdn
    fix_internet, set_internet = _internet_fix(site)
    problem = ccmhostname_problem(value)  # the scenario loader refuses the same values
    if problem is not None:
        return Pending(
            "error", "ccmhostname-invalid",
            f"CCMHOSTNAME={value}: {problem}", fix_internet,
            SRC_CCMHOSTNAME, set_internet)
    if site.intranet_fqdn and same_host(host, site.intranet_fqdn) and not (
            internet and same_host(internet, site.intranet_fqdn)):
        return Pending(
            "error", "ccmhostname-mismatch",
            f"CCMHOSTNAME names the intranet FQDN {host}: on the internet that name does not "
            "resolve; CCMHOSTNAME is the internet MP's FQDN",
            fix_internet, SRC_CCMHOSTNAME, set_internet)
    if internet and not same_host(host, internet):
        return Pending(
            "warning", "ccmhostname-mismatch",
            f"CCMHOSTNAME names {host}, not the site's internet MP {internet}",
            f"{fix_internet} (ignore this if {host} is another internet MP of the site)",
            SRC_CCMHOSTNAME, set_internet)
    return None


# --------------------------------------------------------------------------------------------
# /mp
# --------------------------------------------------------------------------------------------


def _is_cmg(entry: MpAddress) -> bool:
    rest = entry.raw.split("://", 1)[-1]
    return bool(CMG_PATH_RE.match("/" + rest.partition("/")[2]))


def _rewrite_mp(a: list[Arg]) -> None:
    """``https://`` on every CMG URL of ``/mp``, on no other entry."""
    found = find_arg(a, "param", "mp")
    if found is None or found.value is None:
        return
    entries = []
    for raw in found.value.split(";"):
        m = URLISH_RE.fullmatch(raw)
        if not raw or m is None:
            entries.append(raw)
            continue
        path = m.group("path") or ""
        if path and CMG_PATH_RE.match(path):
            entries.append("https://" + raw.split("://", 1)[-1])
        elif (m.group("scheme") or "").lower() == "https":
            entries.append(raw.split("://", 1)[1].rstrip("/"))
        else:
            entries.append(raw)
    found.set(";".join(entries))


def mp_cmg_without_https(args: list[Arg], cmd: CcmsetupCommand,
                         site: SiteContext) -> Pending | None:
    cmg_plain = [e for e in cmd.mp if _is_cmg(e) and not e.https]
    if not cmg_plain:
        return None
    return Pending(
        "error", "mp-cmg-without-https",
        f"/mp entry {cmg_plain[0].raw} is a cloud management gateway URL without "
        "https://: \"For a CMG it must be a URL starting with https://\"",
        "prefix the CMG URL with https://", SRC_MP, _rewrite_mp)


def mp_https_not_cmg(args: list[Arg], cmd: CcmsetupCommand,
                     site: SiteContext) -> Pending | None:
    plain_https = [e for e in cmd.mp if e.https and not _is_cmg(e)]
    if not plain_https:
        return None
    return Pending(
        "info", "mp-https-not-cmg",
        f"/mp entry {plain_https[0].raw} has https:// but is not a cloud management "
        "gateway: /mp needs only the FQDN (matching the MP certificate); only a CMG URL "
        "starts with https://",
        "write the FQDN without https://", SRC_MP, _rewrite_mp)
