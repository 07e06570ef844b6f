"""Strict TOML loader: a scenario file becomes a :class:`~lab.scenario.model.Scenario`.

Unknown keys, wrong types, dangling references and impossible combinations raise
:class:`~lab.errors.ScenarioError` naming the file, the line (when it can be found) and the
key path in TOML spelling (``client[0].step[1].location``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from lab.clock import zone_info
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.errors import ScenarioError
from lab.scenario.model import (
    EKU,
    Action,
    CAKind,
    CASpec,
    CertSpec,
    ClientSpec,
    Faults,
    MPSpec,
    NetworkSpec,
    Scenario,
    ScenarioInfo,
    Site,
    StepSpec,
    Zone,
)

E = TypeVar("E")

_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_SITE_CODE = re.compile(r"[A-Za-z0-9]{3}")
_URL_SCHEMES = ("ldap://", "http://", "file://")
_OFFSET = re.compile(r"([+-]?)(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_UNIT_DAYS = {"s": 1 / 86400, "m": 1 / 1440, "h": 1 / 24, "d": 1.0}
MAX_OFFSET_DAYS = 100 * 365
"""Times relative to the run stay within a century (dates must stay encodable)."""
URL_RETRIEVAL = ("per-url", "accumulative")


class _Locator:
    """Finds the line of a key path in TOML text (best effort: plain tables and keys)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix = ""
        in_string: str | None = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                # inside a multi-line string: nothing here is a header or a key
                if raw.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = self._HEADER.match(raw)
            if header:
                parts = [p.strip().strip("\"'") for p in header.group(2).split(".")]
                prefix = self._resolve(parts, header.group(1) == "[[", counters)
                self.lines.setdefault(prefix, lineno)
                # a sub-table header also defines its parents ([mp.cert] without [mp])
                parent = prefix
                while "." in parent:
                    parent = parent.rsplit(".", 1)[0]
                    self.lines.setdefault(parent, lineno)
                continue
            for quote in ('"""', "'''"):
                if raw.count(quote) % 2 == 1:
                    in_string = quote
                    break
            key = self._KEY.match(raw)
            if key:
                name = key.group(1).strip("\"'")
                path = f"{prefix}.{name}" if prefix else name
                self.lines.setdefault(path, lineno)

    def _resolve(self, parts: list[str], is_array: bool, counters: dict[str, int]) -> str:
        path = ""
        for i, part in enumerate(parts):
            plain = f"{path}.{part}" if path else part
            last = i == len(parts) - 1
            if last and is_array:
                counters[plain] = counters.get(plain, -1) + 1
                for stale in [k for k in counters if k.startswith(plain + "[")]:
                    del counters[stale]
                path = f"{plain}[{counters[plain]}]"
            elif plain in counters:
                path = f"{plain}[{counters[plain]}]"
            else:
                path = plain
        return path

    def line(self, key: str) -> int | None:
        probe = key
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return None


class _Ctx:
    def __init__(self, file: str | None, text: str) -> None:
        self.file = file
        self.locator = _Locator(text)

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(message, file=self.file, key=key, line=self.locator.line(key))


def _type_name(value: object) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)


class _Table:
    """A TOML table being read: typed getters, and a check that no key was left unread."""

    def __init__(self, ctx: _Ctx, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table, got {_type_name(data)}")
        self.ctx = ctx
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def _get(self, name: str, required: bool) -> Any:
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.ctx.error(self.key(name), "is required but missing")
            return None
        return self.data[name]

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> Any:
        value = self._get(name, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.ctx.error(self.key(name), f"expected a string, got {_type_name(value)}")
        if required and not value.strip():
            raise self.ctx.error(self.key(name), "must not be empty")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.ctx.error(
                self.key(name), f"expected true or false, got {_type_name(value)} {value!r}"
            )
        return value

    def integer(self, name: str) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.ctx.error(self.key(name), f"expected an integer, got {_type_name(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...] | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.ctx.error(
                self.key(name), f"expected an array of strings, got {_type_name(value)}"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.ctx.error(
                    f"{self.key(name)}[{i}]", f"expected a string, got {_type_name(item)}"
                )
        return tuple(value)

    def enum(self, name: str, cls: type[E], *, required: bool = False) -> Any:
        value = self.text(name, required=required)
        if value is None:
            return None
        return _enum(self.ctx, self.key(name), value, cls)

    def table(self, name: str, *, required: bool = False) -> _Table | None:
        value = self._get(name, required)
        if value is None:
            return None
        return _Table(self.ctx, value, self.key(name))

    def tables(self, name: str) -> list[_Table]:
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            header = re.sub(r"\[\d+\]", "", self.key(name))
            raise self.ctx.error(
                self.key(name),
                f"expected an array of tables ([[{header}]]), got {_type_name(value)}",
            )
        return [_Table(self.ctx, v, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.used]
        if not unknown:
            return
        name = unknown[0]
        hint = difflib.get_close_matches(name, sorted(self.used), n=1)
        allowed = ", ".join(sorted(self.used))
        message = f"unknown key {name!r}"
        message += f" (did you mean {hint[0]!r}?)" if hint else f"; allowed keys: {allowed}"
        raise self.ctx.error(self.key(name), message)


def _offset(ctx: _Ctx, t: _Table, name: str) -> dt.timedelta | None:
    """``"-1d"``, ``"+7d"``, ``"90m"``: a time relative to the run's time."""
    value = t.text(name)
    if value is None:
        return None
    match = _OFFSET.fullmatch(value.strip())
    if match is None:
        raise ctx.error(t.key(name), "expected a time relative to the run, like \"-1d\", "
                        f"\"+7d\", \"-2h\" or \"30m\" (units s, m, h, d), got {value!r}")
    sign = -1 if match.group(1) == "-" else 1
    amount = float(match.group(2))
    if amount * _UNIT_DAYS[match.group(3)] > MAX_OFFSET_DAYS:
        raise ctx.error(t.key(name), f"expected a time within {MAX_OFFSET_DAYS // 365} years "
                        f"of the run, got {value!r}")
    return sign * dt.timedelta(**{_UNITS[match.group(3)]: amount})


def _enum(ctx: _Ctx, key: str, value: str, cls: type[E]) -> E:
    members = [m.value for m in cls]  # type: ignore[attr-defined]
    try:
        return cls(value.lower())  # type: ignore[call-arg]
    except ValueError:
        raise ctx.error(
            key, f"expected one of {', '.join(map(repr, members))}, got {value!r}"
        ) from None


def _dns_name(ctx: _Ctx, key: str, value: str) -> str:
    if not _DNS_NAME.fullmatch(value):
        raise ctx.error(key, f"expected a DNS host name (letters, digits, '-', '.'), got {value!r}")
    return value


def _url_entries(
    ctx: _Ctx, key: str, entries: tuple[str, ...] | None, kind: CAKind | None
) -> tuple[str, ...] | None:
    if entries is None:
        return None
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        k = f"{key}[{i}]"
        lowered = entry.lower()
        if lowered in ("ldap", "http"):
            if lowered == "ldap" and kind is CAKind.PUBLIC:
                raise ctx.error(
                    k, "'ldap' means the AD CS LDAP template and needs an enterprise CA; "
                    "a public CA publishes over HTTP"
                )
        elif lowered.startswith("https://"):
            raise ctx.error(
                k, f"expected an http://, ldap:// or file:// URL, got {entry!r}: CRLs and "
                "CA certificates are published over plain HTTP (an HTTPS CDP would need a "
                "revocation check of its own)"
            )
        elif not lowered.startswith(_URL_SCHEMES):
            raise ctx.error(
                k, f"expected 'ldap', 'http' or a full ldap://, http:// or file:// URL, "
                f"got {entry!r}"
            )
        if lowered not in ("ldap", "http"):
            problem = _url_problem(entry)
            if problem:
                raise ctx.error(k, f"expected a usable URL, got {entry!r}: {problem}")
        if lowered in seen:
            raise ctx.error(k, f"{entry!r} is listed twice")
        seen.add(lowered)
    return tuple(e.lower() if e.lower() in ("ldap", "http") else e for e in entries)


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot go into a certificate's CDP or AIA (None when it can)."""
    if not url.isascii() or any(ord(c) < 0x21 for c in url):
        return "only printable ASCII without spaces (percent-encode anything else)"
    if len(url) > 2048:
        return "longer than 2048 characters"
    try:
        parsed = urlsplit(url)
        _ = parsed.port
    except ValueError as e:
        return str(e)
    if parsed.scheme.lower() in ("http", "file") and not parsed.hostname:
        return "no host name"
    return None


def _cert(ctx: _Ctx, t: _Table, *, default_issuer: str | None, cas: dict[str, CASpec],
          default_san: tuple[str, ...]) -> CertSpec:
    issuer = t.text("issuer", required=default_issuer is None, default=default_issuer)
    if issuer not in cas:
        known = ", ".join(repr(n) for n in cas) or "none"
        raise ctx.error(
            t.key("issuer"), f"There is no CA named {issuer!r} (defined: {known})"
        )
    san = t.str_list("san")
    if san is not None:
        if not san:
            raise ctx.error(t.key("san"), "expected at least one DNS name")
        for i, name in enumerate(san):
            _dns_name(ctx, f"{t.key('san')}[{i}]", name)
    eku_names = t.str_list("eku")
    eku = (
        tuple(_enum(ctx, f"{t.key('eku')}[{i}]", n, EKU) for i, n in enumerate(eku_names))
        if eku_names is not None else None
    )
    cdp = _url_entries(ctx, t.key("cdp"), t.str_list("cdp"), cas[issuer].kind)
    revoked = t.flag("revoked", False)
    subject = t.text("subject")
    if subject is not None and not 1 <= len(subject.encode("utf-8")) <= 64:
        raise ctx.error(t.key("subject"), "expected a common name of 1 to 64 bytes "
                        f"(X.509 ub-common-name), got {len(subject.encode('utf-8'))} bytes")
    not_before = _offset(ctx, t, "not_before")
    not_after = _offset(ctx, t, "not_after")
    start = not_before if not_before is not None else -dt.timedelta(days=1)
    if not_after is not None and not_after <= start:
        raise ctx.error(t.key("not_after"), "must be later than not_before (the certificate "
                        "would never be valid)")
    t.done()
    return CertSpec(issuer=issuer, san=san if san is not None else default_san,
                    revoked=revoked, eku=eku, cdp=cdp, not_before=not_before,
                    not_after=not_after, subject=subject)


def _ca(ctx: _Ctx, t: _Table) -> CASpec:
    name = t.text("name", required=True)
    kind: CAKind = t.enum("kind", CAKind, required=True)
    host = _dns_name(ctx, t.key("host"), t.text("host", required=True))
    domain = t.text("domain")
    if kind is CAKind.ENTERPRISE:
        if domain is None:
            raise ctx.error(t.key("domain"), "an enterprise CA needs its AD domain "
                            "(domain = \"contoso.local\")")
        _dns_name(ctx, t.key("domain"), domain)
    elif domain is not None:
        raise ctx.error(t.key("domain"), "only an enterprise CA has an AD domain; "
                        "remove it or use kind = \"enterprise\"")
    cdp = _url_entries(ctx, t.key("cdp"), t.str_list("cdp"), kind)
    aia = _url_entries(ctx, t.key("aia"), t.str_list("aia"), kind)
    max_names = t.integer("max_names")
    if max_names is not None:
        if kind is not CAKind.PUBLIC:
            raise ctx.error(t.key("max_names"), "a name limit is a public CA plan's; "
                            "an enterprise CA issues whatever its template allows")
        if max_names < 1:
            raise ctx.error(t.key("max_names"), f"expected 1 or more, got {max_names}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._()-]{0,63}", name):
        raise ctx.error(t.key("name"), f"expected a CA name of letters, digits, spaces and "
                        f"-._() (at most 64 characters), got {name!r}")
    this_update = _offset(ctx, t, "crl_this_update")
    next_update = _offset(ctx, t, "crl_next_update")
    defaults = CASpec(name=name, kind=kind, host=host)
    this_update = defaults.crl_this_update if this_update is None else this_update
    next_update = defaults.crl_next_update if next_update is None else next_update
    if next_update <= this_update:
        raise ctx.error(t.key("crl_next_update"), "must be later than crl_this_update")
    spec = CASpec(
        name=name, kind=kind, host=host, domain=domain, cdp=cdp, aia=aia, max_names=max_names,
        parent=t.text("parent"), crl_this_update=this_update, crl_next_update=next_update,
        crl_signer=t.text("crl_signer"), crl_sign=t.flag("crl_sign", True),
        revoked=t.flag("revoked", False),
        delta_cdp=_url_entries(ctx, t.key("delta_cdp"), t.str_list("delta_cdp"), kind))
    t.done()
    return spec


def _step(ctx: _Ctx, t: _Table) -> StepSpec:
    action: Action = t.enum("action", Action, required=True)
    location: Zone = t.enum("location", Zone, required=True)
    expect = t.text("expect")
    if expect is not None:
        expect = expect.strip()
        if not expect:
            raise ctx.error(t.key("expect"), "expected 'ok', 'fail' or a failure identifier "
                            "(CRYPT_E_REVOCATION_OFFLINE, 0x80092013, 403.13, ...)")
        if expect.lower() in ("ok", "fail"):
            expect = expect.lower()
    t.done()
    return StepSpec(action=action, location=location, expect=expect)


def _client(ctx: _Ctx, t: _Table, cas: dict[str, CASpec], default_issuer: str | None,
            ad_domain: str | None) -> ClientSpec:
    name = t.text("name", required=True)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", name):
        raise ctx.error(t.key("name"), f"expected a computer name (letters, digits, '-'), "
                        f"got {name!r}")
    domain_joined = t.flag("domain_joined", True)
    if domain_joined and ad_domain is None:
        implicit = "" if "domain_joined" in t.data else " (domain_joined defaults to true)"
        raise ctx.error(t.key("domain_joined"), f"a domain-joined client{implicit} needs an AD "
                        "domain: define an enterprise [[ca]] with domain = \"...\", or set "
                        "domain_joined = false for a workgroup machine")
    raw = t.text("ccmsetup", required=True)
    try:
        command = parse_ccmsetup(raw)
    except ScenarioError as e:
        raise e.located(file=ctx.file, key=t.key("ccmsetup"),
                        line=ctx.locator.line(t.key("ccmsetup"))) from e
    default_fqdn = f"{name}.{ad_domain}" if domain_joined and ad_domain else name
    fqdn = _dns_name(ctx, t.key("fqdn"), t.text("fqdn", default=default_fqdn))
    raw_cert = t.data.get("cert")
    certs: tuple[CertSpec, ...]
    if raw_cert is False:
        t.used.add("cert")
        certs = ()
    elif raw_cert is None:
        certs = (CertSpec(issuer=default_issuer, san=(fqdn,)),) if default_issuer else ()
    elif isinstance(raw_cert, dict):
        cert_table = t.table("cert")
        assert cert_table is not None
        certs = (_cert(ctx, cert_table, default_issuer=default_issuer, cas=cas,
                       default_san=(fqdn,)),)
    elif isinstance(raw_cert, list) and raw_cert and all(isinstance(c, dict) for c in raw_cert):
        certs = tuple(_cert(ctx, c, default_issuer=default_issuer, cas=cas, default_san=(fqdn,))
                      for c in t.tables("cert"))
    else:
        raise ctx.error(t.key("cert"), "expected a [client.cert] table, [[client.cert]] tables "
                        "for several certificates, or false for a computer without a client "
                        f"certificate, got {_type_name(raw_cert)}")
    skew = _offset(ctx, t, "clock_skew") or dt.timedelta(0)
    trusted = t.str_list("trusted_roots")
    for i, root in enumerate(trusted or ()):
        if root not in cas:
            known = ", ".join(repr(n) for n in cas)
            raise ctx.error(f"{t.key('trusted_roots')}[{i}]",
                            f"There is no CA named {root!r} (defined: {known})")
    retrieval = t.text("url_retrieval", default="per-url")
    if retrieval not in URL_RETRIEVAL:
        choices = ", ".join(map(repr, URL_RETRIEVAL))
        raise ctx.error(t.key("url_retrieval"), f"expected one of {choices}, got {retrieval!r}")
    steps = [_step(ctx, s) for s in t.tables("step")]
    if not steps:
        raise ctx.error(t.key("step"), "a client needs at least one [[client.step]]")
    t.done()
    return ClientSpec(name=name, domain_joined=domain_joined, ccmsetup=command, fqdn=fqdn,
                      certs=certs, steps=tuple(steps), trusted_roots=trusted, clock_skew=skew,
                      url_retrieval=retrieval)


def _faults(ctx: _Ctx, t: _Table | None) -> Faults:
    if t is None:
        return Faults()

    def status(name: str) -> int | None:
        value = t.integer(name)
        if value is not None and not 400 <= value <= 599:
            raise ctx.error(t.key(name), f"expected an HTTP error status from 400 to 599, "
                            f"got {value}")
        return value

    body = t.text("crl_body")
    if body is not None and body not in ("truncated", "garbage"):
        raise ctx.error(t.key("crl_body"), f"expected 'truncated' or 'garbage', got {body!r}")
    huge = t.integer("crl_huge")
    if huge is not None and not 1 <= huge <= 1_000_000:
        raise ctx.error(t.key("crl_huge"), f"expected a number of entries from 1 to 1000000, "
                        f"got {huge}")
    delay = _offset(ctx, t, "cdp_delay")
    if delay is not None and delay <= dt.timedelta(0):
        raise ctx.error(t.key("cdp_delay"), "expected a positive delay like \"20s\"")
    ldap_delay = _offset(ctx, t, "ldap_delay")
    if ldap_delay is not None and ldap_delay <= dt.timedelta(0):
        raise ctx.error(t.key("ldap_delay"), "expected a positive delay like \"20s\"")
    content_type = t.text("cdp_content_type")
    if content_type is not None and not re.fullmatch(r"[\w.+-]+/[\w.+-]+", content_type):
        raise ctx.error(t.key("cdp_content_type"), f"expected a media type like "
                        f"'text/html', got {content_type!r}")
    faults = Faults(
        cdp_down=t.flag("cdp_down", False), cdp_delay=delay, cdp_status=status("cdp_status"),
        cdp_content_type=content_type, crl_body=body,
        crl_foreign_signature=t.flag("crl_foreign_signature", False), crl_huge=huge,
        crl_stale=t.flag("crl_stale", False), ldap_down=t.flag("ldap_down", False),
        ldap_delay=ldap_delay,
        mp_down=t.flag("mp_down", False), mp_status=status("mp_status"))
    t.done()
    return faults


def _network(ctx: _Ctx, t: _Table | None) -> NetworkSpec:
    if t is None:
        return NetworkSpec()
    reachable: dict[str, frozenset[Zone]] = {}
    table = t.table("reachable")
    if table is not None:
        for host, zones in table.data.items():
            key = f"{table.path}.{host}"
            table.used.add(host)
            if host != "ldap:///":
                _dns_name(ctx, key, host)
            if isinstance(zones, dict):
                raise ctx.error(key, "expected an array of zones, got a table: a host name with "
                                f"dots must be quoted, as in \"{host}.example.com\" = "
                                "[\"intranet\"]")
            if not isinstance(zones, list):
                raise ctx.error(key, f"expected an array of zones, got {_type_name(zones)}")
            parsed = set()
            for i, z in enumerate(zones):
                if not isinstance(z, str):
                    raise ctx.error(f"{key}[{i}]", f"expected a zone name, got {_type_name(z)}")
                parsed.add(_enum(ctx, f"{key}[{i}]", z, Zone))
            reachable[host.lower()] = frozenset(parsed)
        table.done()
    t.done()
    return NetworkSpec(reachable=MappingProxyType(reachable))


def _scenario(ctx: _Ctx, data: dict[str, Any], name: str) -> Scenario:
    top = _Table(ctx, data, "")
    info_t = top.table("scenario", required=True)
    assert info_t is not None
    tz = info_t.text("timezone", default="UTC")
    try:
        zone_info(tz)
    except (ValueError, KeyError):
        raise ctx.error(info_t.key("timezone"), f"expected an IANA time zone such as "
                        f"'UTC', 'Asia/Tokyo' or 'Europe/Berlin', got {tz!r}") from None
    info = ScenarioInfo(
        title=info_t.text("title", required=True),
        description=info_t.text("description", default=""),
        source=info_t.text("source", default=""),
        timezone=tz,
    )
    info_t.done()

    site_t = top.table("site")
    site = Site()
    if site_t is not None:
        code = site_t.text("code", default="P01")
        if not _SITE_CODE.fullmatch(code):
            raise ctx.error(site_t.key("code"), f"expected a 3-character site code, got {code!r}")
        site = Site(code=code.upper(), check_crl=site_t.flag("check_crl", True),
                    https_only=site_t.flag("https_only", True),
                    trusted_roots=site_t.str_list("trusted_roots"))
        site_t.done()

    ca_tables = top.tables("ca")
    if not ca_tables:
        raise ctx.error("ca", "at least one [[ca]] is required")
    cas: dict[str, CASpec] = {}
    for t in ca_tables:
        ca = _ca(ctx, t)
        if ca.name in cas:
            raise ctx.error(t.key("name"), f"a CA named {ca.name!r} is already defined")
        cas[ca.name] = ca

    for t in ca_tables:
        spec = cas[t.data["name"]]
        for key, ref in (("parent", spec.parent), ("crl_signer", spec.crl_signer)):
            if ref is not None and ref not in cas:
                known = ", ".join(repr(n) for n in cas)
                raise ctx.error(t.key(key), f"There is no CA named {ref!r} (defined: {known})")
        if spec.revoked and spec.parent is None:
            raise ctx.error(t.key("revoked"), "only an issuing CA (one with a parent) can be "
                            "revoked: a root is trusted or not, it has no CRL above it")
        seen, walk = {spec.name}, spec.parent
        while walk is not None:
            if walk in seen:
                raise ctx.error(t.key("parent"), f"the CA hierarchy loops back to {walk!r}")
            seen.add(walk)
            walk = cas[walk].parent
    for i, root in enumerate(site.trusted_roots or ()):
        if root not in cas:
            known = ", ".join(repr(n) for n in cas)
            raise ctx.error(f"site.trusted_roots[{i}]",
                            f"There is no CA named {root!r} (defined: {known})")
    mp_t = top.table("mp", required=True)
    assert mp_t is not None
    intranet = _dns_name(ctx, mp_t.key("intranet_fqdn"), mp_t.text("intranet_fqdn", required=True))
    internet = mp_t.text("internet_fqdn")
    if internet is not None:
        _dns_name(ctx, mp_t.key("internet_fqdn"), internet)
    cert_t = mp_t.table("cert", required=True)
    assert cert_t is not None
    default_san = (intranet,) + ((internet,) if internet else ())
    mp_cert = _cert(ctx, cert_t, default_issuer=None, cas=cas, default_san=default_san)
    mp_zone: Zone = mp_t.enum("zone", Zone) or Zone.INTRANET
    mp_joined = mp_t.flag("domain_joined", True)
    mp_t.done()
    mp = MPSpec(intranet_fqdn=intranet, internet_fqdn=internet, cert=mp_cert, zone=mp_zone,
                domain_joined=mp_joined)

    ad_domain = next((c.domain for c in cas.values() if c.kind is CAKind.ENTERPRISE), None)
    default_client_issuer = (
        mp_cert.issuer if cas[mp_cert.issuer].kind is CAKind.ENTERPRISE
        else next((c.name for c in cas.values() if c.kind is CAKind.ENTERPRISE), mp_cert.issuer)
    )
    network = _network(ctx, top.table("network"))
    faults = _faults(ctx, top.table("faults"))
    clients: list[ClientSpec] = []
    for t in top.tables("client"):
        client = _client(ctx, t, cas, default_client_issuer, ad_domain)
        if any(c.name.lower() == client.name.lower() for c in clients):
            raise ctx.error(t.key("name"), f"a client named {client.name!r} is already defined")
        clients.append(client)
    if not clients:
        raise ctx.error("client", "at least one [[client]] is required")
    top.done()
    return Scenario(name=name, file=ctx.file, info=info, site=site, cas=tuple(cas.values()),
                    mp=mp, network=network, clients=tuple(clients), faults=faults)


_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_scenario_text(text: str, *, file: str | None = None, name: str | None = None) -> Scenario:
    """Parse scenario TOML ``text``; ``file`` is only used in error messages."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ScenarioError("TOML syntax error: arrays or tables nested too deeply",
                            file=file) from None
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = _TOML_POS.search(message)
        line = int(match.group(1)) if match else None
        clean = _TOML_POS.sub("", message).strip()
        if match is None and "(at end of document)" in message:
            line = max(1, len(text.splitlines()))
            clean = message.replace("(at end of document)", "").strip() + " at the end of the file"
        col = f" (column {match.group(2)})" if match else ""
        raise ScenarioError(f"TOML syntax error: {clean}{col}", file=file, line=line) from None
    except ValueError as e:  # for example an integer of thousands of digits
        raise ScenarioError(f"TOML value cannot be read: {e}", file=file) from None
    stem = name or (Path(file).stem if file else "scenario")
    return _scenario(_Ctx(file, text), data, stem)


def load_scenario(path: str | Path) -> Scenario:
    """Load one scenario file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ScenarioError("no such file", file=str(p)) from None
    except IsADirectoryError:
        raise ScenarioError("is a folder, expected a .toml file", file=str(p)) from None
    except OSError as e:
        raise ScenarioError(f"cannot be read: {e.strerror}", file=str(p)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ScenarioError("is not UTF-8 text", file=str(p), line=line) from None
    return load_scenario_text(text, file=str(p))


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files named by ``paths``: a file as given, a folder as its ``*.toml`` files
    (recursively, in sorted order)."""
    found: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files = sorted(p.rglob("*.toml"))
            if not files:
                raise ScenarioError("the folder holds no *.toml scenario files", file=str(p))
            found.extend(files)
        elif p.exists():
            found.append(p)
        else:
            raise ScenarioError("no such file or folder", file=str(p))
    return found


def load_all(paths: Sequence[str | Path],
             loader: Callable[[str | Path], Scenario] = load_scenario) -> list[Scenario]:
    """Load every scenario named by ``paths`` (see :func:`discover`); fail on the first error."""
    scenarios = [loader(p) for p in discover(paths)]
    names: dict[str, Scenario] = {}
    for s in scenarios:
        if s.name in names:
            raise ScenarioError(
                f"two scenarios share the name {s.name!r} (also {names[s.name].file}); "
                "rename one file", file=s.file)
        names[s.name] = s
    return scenarios
