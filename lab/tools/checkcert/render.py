"""check-cert's report as text (100 columns) and as JSON."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lab.names import printable
from lab.pki.urls import cert_aia_urls, cert_cdp_urls
from lab.tools.checkcert.catalogue import ERROR, INFO, SEVERITY_ORDER, WARNING
from lab.tools.checkcert.inputs import public_key
from lab.tools.checkcert.profile import ccmsetup_line, cert_ekus, eku_text, san_dns
from lab.tools.checkcert.reach import reach_text
from lab.tools.checkcert.replay import SITUATION_TITLES, Cell
from lab.tools.checkcert.report import CheckCertReport

WIDTH = 100


def _key_text(cert: x509.Certificate) -> str:
    """``RSA 2048, signed with SHA256``."""
    key = public_key(cert)
    if key is None:
        return "unreadable key"
    if isinstance(key, rsa.RSAPublicKey):
        text = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        text = f"ECDSA {key.curve.name}"
    else:
        text = type(key).__name__.replace("PublicKey", "").lstrip("_")
    try:
        algo = cert.signature_hash_algorithm
        signed = algo.name.upper() if algo is not None else "(no hash)"
    except UnsupportedAlgorithm:
        signed = cert.signature_algorithm_oid.dotted_string
    return f"{text}, signed with {signed}"


def report_dict(report: CheckCertReport) -> dict[str, Any]:
    """The report as ``--format json`` writes it."""
    cert, profile = report.loaded.cert, report.profile
    names, ekus = san_dns(cert), cert_ekus(cert)
    return {
        "file": report.loaded.file,
        "form": report.loaded.form,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": names,
        "eku": None if ekus is None else [o.dotted_string for o in ekus],
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": _key_text(cert),
        "cdp": [{"url": u, "reachable_from": report.reach[u][0], "why": report.reach[u][1]}
                for u in cert_cdp_urls(cert)],
        "aia": [{"url": u, "reachable_from": report.reach[u][0], "why": report.reach[u][1]}
                for u in cert_aia_urls(cert)],
        "intranet_fqdn": profile.intranet_fqdn,
        "internet_fqdn": profile.internet_fqdn,
        "fqdn_source": profile.fqdn_source,
        "findings": [f.as_dict() for f in report.findings],
        "replay_setup": {
            "cas": [{"name": c.spec.name, "kind": c.spec.kind.value, "host": c.spec.host,
                     "domain": c.spec.domain, "parent": c.spec.parent,
                     "cdp": list(c.spec.cdp or ()), "aia": list(c.spec.aia or ()),
                     "why": c.why} for c in profile.cas],
            "ad_domain": profile.ad_domain,
            "ccmsetup": ccmsetup_line(profile) if profile.intranet_fqdn else None,
            "notes": profile.notes,
            "skipped": profile.skip_reason,
            "conditions": [c.as_dict() for c in report.conditions],
        },
        "replay": None if report.replay is None else [c.as_dict() for c in report.replay],
        "exit_code": report.exit_code,
    }


def render_json(report: CheckCertReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def _wrap(label: str, text: str, indent: int = 2, width: int = 10) -> list[str]:
    prefix = " " * indent + f"{label:<{width}}"
    return textwrap.wrap(text, WIDTH, initial_indent=prefix,
                         subsequent_indent=" " * (indent + width), break_on_hyphens=False,
                         break_long_words=False) or [prefix.rstrip()]


def render_text(report: CheckCertReport) -> str:
    """The report as the terminal shows it (100 columns; URLs are never broken)."""
    cert, profile = report.loaded.cert, report.profile
    lines = [f"check-cert {report.loaded.file} ({report.loaded.form})"]
    lines += _wrap("subject", cert.subject.rfc4514_string() or "(empty)")
    lines += _wrap("issuer", cert.issuer.rfc4514_string())
    names = san_dns(cert)
    lines += _wrap("SAN", ", ".join(names) if names else
                   "(no SAN extension)" if names is None else "(no DNS names)")
    lines += _wrap("EKU", eku_text(cert_ekus(cert)))
    lines += _wrap("validity", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                               f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    lines += _wrap("key", _key_text(cert))
    for label, urls in (("CDP", cert_cdp_urls(cert)), ("AIA", cert_aia_urls(cert))):
        if not urls:
            lines += _wrap(label, "(none)")
        for i, u in enumerate(urls, start=1):
            keys, why = report.reach[u]
            lines.append(f"  {label if i == 1 else '':<10}{i}. {u}")  # URLs stay whole
            lines += _wrap("", f"   reachable by {reach_text(keys)} ({why})")
    lines += _wrap("MP", f"intranet {profile.intranet_fqdn or '(unknown)'}, internet "
                         f"{profile.internet_fqdn or '(none)'}"
                         + {"san": " (taken from the certificate)",
                            "mixed": " (partly taken from the certificate)"}.get(
                             profile.fqdn_source, ""))
    lines.append("")
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITY_ORDER}
    lines.append(f"Findings: {counts[ERROR]} error(s), {counts[WARNING]} warning(s), "
                 f"{counts[INFO]} note(s)")
    for f in report.findings:
        lines += _wrap(f.severity.upper(), f"{f.code}: {f.reason}")
        lines += _wrap("", f"fix: {f.fix}")
        lines += _wrap("", f"source: {f.source}")
    if not report.findings:
        lines.append("  none")
    lines.append("")
    if profile.skip_reason is not None:
        lines.append(f"Replay skipped: {profile.skip_reason}")
    elif report.replay is None:
        lines.append("Replay skipped (--no-replay)")
    else:
        lines += _render_replay(report)
    lines.append("")
    failing = sum(1 for c in report.replay or [] if c.outcome != "ok")
    verdict = ("fine" if report.exit_code == 0 else
               f"{counts[ERROR]} error finding(s), {failing} failing replay cell(s)")
    lines.append(f"Result: {verdict} (exit {report.exit_code})")
    # one value (a ccmsetup line, a certificate field, a URL) never spans lines or reaches
    # the terminal with a control character in it
    return "\n".join(printable(line) for line in lines) + "\n"


def _render_replay(report: CheckCertReport) -> list[str]:
    profile = report.profile
    cells = report.replay or []
    lines = ["Replay in the lab (the same profile under a lab CA, on the lab's MP):"]
    for ca in profile.cas:
        lines += _wrap("CA", f"{ca.spec.name} on {ca.spec.host}: {ca.why}"
                       + (f", issued by {ca.spec.parent}" if ca.spec.parent else ""))
    lines += _wrap("ccmsetup", ccmsetup_line(profile))
    lines += _wrap("", "/NoCRLCheck covers the bootstrap only (seed §3, reference §2.3): from "
                       "the first site refresh the site's CRL setting decides")
    lines += _wrap("steps", "install, register, site refresh, policy; the internet client "
                            "installs and registers inside, then runs policy on the internet")
    lines += _wrap("not", "replayed: the signature hash, key size and key usage (the lab signs "
                          "with SHA-256 and its own RSA 2048 key) and the real CRL's contents "
                          "(the lab publishes a fresh, valid CRL at every URL"
                          + (", except as the conditions below say)" if report.conditions
                             else ")"))
    for condition in report.conditions:
        lines += _wrap("condition", condition.describe())
    for note in profile.notes:
        lines += _wrap("note", note)
    lines.append("")
    keys = list(dict.fromkeys(c.situation for c in cells))
    by = {(c.situation, c.site_crl): c for c in cells}
    col = max(40, 2 + max(len(SITUATION_TITLES[k]) for k in keys))
    lines.append(f"  {'situation':<{col}}{'site CRL check on':<32}site CRL check off")
    for key in keys:
        on, off = by[(key, "on")], by[(key, "off")]
        lines.append(f"  {SITUATION_TITLES[key]:<{col}}{on.error or 'ok':<32}"
                     f"{off.error or 'ok'}")
    if profile.internet_fqdn is None:
        lines += _wrap("note", "no internet FQDN (give --internet-fqdn): the internet client "
                               "is not replayed")
    return lines + _failures(cells)


def _failures(cells: list[Cell]) -> list[str]:
    """Cells failing the same way (same error, step, detail, CRL results and fix) are shown
    once, with every cell they cover."""
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for c in cells:
        if c.outcome != "ok":
            step = (c.failed_step or "").split(" @ ")[0]
            groups.setdefault((c.error, step, c.detail, tuple(c.crl), c.fix), []).append(c)
    lines: list[str] = []
    for (error, step, detail, crl, fix), members in groups.items():
        first = members[0]
        code = f" {first.error_hex}" if first.error_hex and first.error_hex != error else ""
        where: dict[str, list[str]] = {}
        for m in members:
            where.setdefault(m.situation, []).append(m.site_crl)
        covered = "; ".join(f"{SITUATION_TITLES[k]} (site CRL {', '.join(v)})"
                            for k, v in where.items())
        lines.append("")
        lines += _wrap("FAIL", f"{error}{code} at step {step}{')' if '(' in step else ''}: "
                               f"{covered}", indent=2, width=6)
        lines += _wrap("why", _first_sentence(first.explanation), indent=6, width=6)
        if detail:
            lines += _wrap("", detail, indent=6, width=6)
        lines += [f"      {'crl':<6}{line}" for line in crl]
        if fix:
            lines += _wrap("fix", fix, indent=6, width=6)
    return lines


def _first_sentence(text: str) -> str:
    """The explanation's first sentence (the text view keeps it short)."""
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z(\"'])", text)
    return text[:m.start()] if m else text
