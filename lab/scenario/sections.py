"""Reading a scenario's sections ([scenario], [site], [[ca]], [mp], [[client]], [network],
[faults]) into the model, with the checks that span several fields."""

from __future__ import annotations

import datetime as dt
import re
from types import MappingProxyType
from typing import Any

from lab.clock import zone_info
from lab.codes import expect_problem
from lab.configmgr.ccmsetup import ccmhostname_problem, parse_ccmsetup
from lab.errors import ScenarioError
from lab.names import is_site_code
from lab.scenario.fields import (
    Table,
    dns_name,
    duration,
    enum_value,
    offset,
    san_name,
    type_name,
    url_entries,
)
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
    UrlCacheStart,
    Zone,
)
from lab.scenario.timeline import due_time, format_offset
from lab.scenario.toml_source import Context

__all__ = ["URL_RETRIEVAL", "read_scenario"]

URL_RETRIEVAL = ("per-url", "accumulative")
"""The values of a client's ``url_retrieval``."""


def _cert(ctx: Context, t: Table, *, default_issuer: str | None, cas: dict[str, CASpec],
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
            san_name(ctx, f"{t.key('san')}[{i}]", name)
    eku_names = t.str_list("eku")
    eku = (
        tuple(enum_value(ctx, f"{t.key('eku')}[{i}]", n, EKU) for i, n in enumerate(eku_names))
        if eku_names is not None else None
    )
    cdp = url_entries(ctx, t.key("cdp"), t.str_list("cdp"), cas[issuer].kind)
    revoked = t.flag("revoked", False)
    subject = t.text("subject")
    if subject is not None and not 1 <= len(subject.encode("utf-8")) <= 64:
        raise ctx.error(t.key("subject"), "expected a common name of 1 to 64 bytes "
                        f"(X.509 ub-common-name), got {len(subject.encode('utf-8'))} bytes")
    if subject is not None and not subject.isprintable():
        raise ctx.error(t.key("subject"), f"expected a common name without control characters, "
                        f"got {subject!r}")
    not_before = offset(ctx, t, "not_before")
    not_after = offset(ctx, t, "not_after")
    # AD CS backdates notBefore ClockSkewMinutes (10) before issue (reference §3.3c).
    start = not_before if not_before is not None else -dt.timedelta(minutes=10)
    if not_after is not None and not_after <= start:
        raise ctx.error(t.key("not_after"), "must be later than not_before (the certificate "
                        "would never be valid)")
    t.done()
    return CertSpec(issuer=issuer, san=san if san is not None else default_san,
                    revoked=revoked, eku=eku, cdp=cdp, not_before=not_before,
                    not_after=not_after, subject=subject)


def _ca(ctx: Context, t: Table) -> CASpec:
    name = t.text("name", required=True)
    kind: CAKind = t.enum("kind", CAKind, required=True)
    host = dns_name(ctx, t.key("host"), t.text("host", required=True))
    domain = t.text("domain")
    if kind is CAKind.ENTERPRISE:
        if domain is None:
            raise ctx.error(t.key("domain"), "an enterprise CA needs its AD domain "
                            "(domain = \"contoso.local\")")
        dns_name(ctx, t.key("domain"), domain)
    elif domain is not None:
        raise ctx.error(t.key("domain"), "only an enterprise CA has an AD domain; "
                        "remove it or use kind = \"enterprise\"")
    cdp = url_entries(ctx, t.key("cdp"), t.str_list("cdp"), kind)
    aia = url_entries(ctx, t.key("aia"), t.str_list("aia"), kind)
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
    this_update = offset(ctx, t, "crl_this_update")
    next_update = offset(ctx, t, "crl_next_update")
    defaults = CASpec(name=name, kind=kind, host=host)
    this_update = defaults.crl_this_update if this_update is None else this_update
    next_update = defaults.crl_next_update if next_update is None else next_update
    if next_update <= this_update:
        raise ctx.error(t.key("crl_next_update"), "must be later than crl_this_update")
    crl_period = duration(ctx, t, "crl_period", what="a base CRL period")
    crl_period = defaults.crl_period if crl_period is None else crl_period
    delta_period = duration(ctx, t, "delta_period", zero=True, what="a delta CRL period")
    delta_period = defaults.delta_period if delta_period is None else delta_period
    crl_overlap = duration(ctx, t, "crl_overlap", zero=True, what="an overlap period")
    delta_overlap = duration(ctx, t, "delta_overlap", zero=True, what="an overlap period")
    if delta_overlap is not None and not delta_period:
        raise ctx.error(t.key("delta_overlap"), "delta_period = \"0d\" publishes no delta "
                        "CRLs: remove delta_overlap or give delta_period a length")
    # AD CS: a manually set overlap period cannot exceed the publishing period (reference §4.4a).
    for key, overlap, period in (("crl_overlap", crl_overlap, crl_period),
                                 ("delta_overlap", delta_overlap, delta_period)):
        if overlap is not None and overlap > period:
            raise ctx.error(t.key(key), f"must not be longer than its publishing period "
                            f"({format_offset(period).lstrip('+')}): AD CS refuses a longer "
                            "overlap")
    offline_from = offset(ctx, t, "offline_from")
    if offline_from is not None and offline_from < dt.timedelta(0):
        raise ctx.error(t.key("offline_from"), "expected a time at or after the scenario's "
                        "start, like \"+1d\" (the CRL current at the start is always published)")
    spec = CASpec(
        name=name, kind=kind, host=host, domain=domain, cdp=cdp, aia=aia, max_names=max_names,
        parent=t.text("parent"), crl_this_update=this_update, crl_next_update=next_update,
        crl_signer=t.text("crl_signer"), crl_sign=t.flag("crl_sign", True),
        revoked=t.flag("revoked", False),
        delta_cdp=url_entries(ctx, t.key("delta_cdp"), t.str_list("delta_cdp"), kind),
        crl_period=crl_period, crl_overlap=crl_overlap, delta_period=delta_period,
        delta_overlap=delta_overlap, offline_from=offline_from,
        iis_allow_double_escaping=t.flag("iis_allow_double_escaping", True))
    t.done()
    return spec


def _step(ctx: Context, t: Table) -> StepSpec:
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
        elif (problem := expect_problem(expect)) is not None:
            raise ctx.error(t.key("expect"), problem)
    ccmexec_location: Zone | None = t.enum("ccmexec_location", Zone)
    if ccmexec_location is not None and action is not Action.INSTALL:
        raise ctx.error(t.key("ccmexec_location"), "only an install step starts ccmexec; "
                        f"this step's action is {action.value!r}")
    raw_at = t.data.get("at")
    t.used.add("at")
    try:
        at = offset(ctx, t, "at") if isinstance(raw_at, str) else None
    except ScenarioError:
        at = None
    if "at" in t.data and (at is None or at < dt.timedelta(0)):
        shown = repr(raw_at) if isinstance(raw_at, str) else type_name(raw_at)
        raise ctx.error(t.key("at"), "expected a time after the scenario's start, like "
                        f"\"+8d\", \"+36h\" or \"+90m\", got {shown}")
    after = duration(ctx, t, "after", zero=True, what="a time after the client's previous step")
    if at is not None and after is not None:
        raise ctx.error(t.key("after"), "a step has 'at' (from the scenario's start) or "
                        "'after' (from the client's previous step), not both")
    t.done()
    return StepSpec(action=action, location=location, expect=expect, at=at, after=after,
                    ccmexec_location=ccmexec_location)


def _client(ctx: Context, t: Table, cas: dict[str, CASpec], default_issuer: str | None,
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
    if command.ccmhostname is not None and (
            problem := ccmhostname_problem(command.ccmhostname)) is not None:
        # the linter's ccmhostname-invalid: a value no client can connect to
        raise ctx.error(t.key("ccmsetup"), f"CCMHOSTNAME={command.ccmhostname}: {problem} "
                        "(expected the internet MP's FQDN)")
    default_fqdn = f"{name}.{ad_domain}" if domain_joined and ad_domain else name
    fqdn = dns_name(ctx, t.key("fqdn"), t.text("fqdn", default=default_fqdn))
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
                        f"certificate, got {type_name(raw_cert)}")
    skew = offset(ctx, t, "clock_skew") or dt.timedelta(0)
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
    url_cache = _url_cache(ctx, t)
    steps = [_step(ctx, s) for s in t.tables("step")]
    if not steps:
        raise ctx.error(t.key("step"), "a client needs at least one [[client.step]]")
    t.done()
    return ClientSpec(name=name, domain_joined=domain_joined, ccmsetup=command, fqdn=fqdn,
                      certs=certs, steps=tuple(steps), trusted_roots=trusted, clock_skew=skew,
                      url_retrieval=retrieval, url_cache=url_cache)


def _url_cache(ctx: Context, t: Table) -> UrlCacheStart | None:
    """``url_cache = "empty"`` (the default) or ``[client.url_cache]`` with ``filled_on``
    (a zone) and ``at`` (a time relative to the run, default now)."""
    raw = t.data.get("url_cache")
    if raw is None or raw == "empty":
        t.used.add("url_cache")
        return None
    if not isinstance(raw, dict):
        got = repr(raw) if isinstance(raw, str) else type_name(raw)
        raise ctx.error(t.key("url_cache"), "expected \"empty\" or a [client.url_cache] table "
                        f"with filled_on = \"intranet\" (and at = \"-1d\"), got {got}")
    table = t.table("url_cache")
    assert table is not None
    zone: Zone = table.enum("filled_on", Zone, required=True)
    at = offset(ctx, table, "at") or dt.timedelta(0)
    table.done()
    return UrlCacheStart(zone, at)


def _check_times(ctx: Context, clients: list[ClientSpec]) -> None:
    """A client's steps happen in its file order: refuse a step due before the previous one
    of the same client (``at`` earlier than it)."""
    previous_in_file = dt.timedelta(0)
    for ci, client in enumerate(clients):
        previous: dt.timedelta | None = None
        for si, step in enumerate(client.steps):
            due = due_time(step, previous_in_file, previous)
            if previous is not None and due < previous:
                key = f"client[{ci}].step[{si}].{'at' if step.at is not None else 'after'}"
                raise ctx.error(key, f"this step would happen before step {si} of client "
                                f"{client.name!r} ({format_offset(due)}, that one at "
                                f"{format_offset(previous)}): a client's steps happen in their "
                                "file order (a step without at/after comes a second after the "
                                "step above it in the file, whatever its client: give the "
                                "earlier steps an 'at' too)")
            previous_in_file = previous = due


def _faults(ctx: Context, t: Table | None) -> Faults:
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
    delay = offset(ctx, t, "cdp_delay")
    if delay is not None and delay <= dt.timedelta(0):
        raise ctx.error(t.key("cdp_delay"), "expected a positive delay like \"20s\"")
    ldap_delay = offset(ctx, t, "ldap_delay")
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


def _network(ctx: Context, t: Table | None) -> NetworkSpec:
    if t is None:
        return NetworkSpec()
    reachable: dict[str, frozenset[Zone]] = {}
    table = t.table("reachable")
    if table is not None:
        for host, zones in table.data.items():
            key = f"{table.path}.{host}"
            table.used.add(host)
            if host != "ldap:///":
                dns_name(ctx, key, host)
            if isinstance(zones, dict):
                raise ctx.error(key, "expected an array of zones, got a table: a host name with "
                                f"dots must be quoted, as in \"{host}.example.com\" = "
                                "[\"intranet\"]")
            if not isinstance(zones, list):
                raise ctx.error(key, f"expected an array of zones, got {type_name(zones)}")
            parsed = set()
            for i, z in enumerate(zones):
                if not isinstance(z, str):
                    raise ctx.error(f"{key}[{i}]", f"expected a zone name, got {type_name(z)}")
                parsed.add(enum_value(ctx, f"{key}[{i}]", z, Zone))
            reachable[host.lower()] = frozenset(parsed)
        table.done()
    t.done()
    return NetworkSpec(reachable=MappingProxyType(reachable))


def read_scenario(ctx: Context, data: dict[str, Any], name: str) -> Scenario:
    """The whole scenario from parsed TOML ``data``; ``name`` is its stem."""
    top = Table(ctx, data, "")
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
        if not is_site_code(code):
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
    intranet = dns_name(ctx, mp_t.key("intranet_fqdn"), mp_t.text("intranet_fqdn", required=True))
    internet = mp_t.text("internet_fqdn")
    if internet is not None:
        dns_name(ctx, mp_t.key("internet_fqdn"), internet)
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
    _check_times(ctx, clients)
    top.done()
    return Scenario(name=name, file=ctx.file, info=info, site=site, cas=tuple(cas.values()),
                    mp=mp, network=network, clients=tuple(clients), faults=faults)
