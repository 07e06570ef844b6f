"""What the training console shows of a step and of a run, as JSON for the page.

Every field comes from the engine's own results (:class:`lab.results.verdicts.StepResult`, the
scenario's :class:`lab.protocols.network.Network`, the running lab's host map). The CMTrace rows are
the HTML report's (:func:`lab.report.html.step_view`: ``type`` 3 is shown with a red
background, 2 yellow, as CMTrace does). Codes docs/reference.md marks as inferred
([I]/[C]) carry ``verified: false`` and lab-own outcomes ``kind: "lab"``: the page labels both
as the lab's model, never as product output.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from lab.codes import Code, flag_names
from lab.protocols.network import LOOPBACK, HostMap, Machine, Network
from lab.report.certutil import render_step_trace
from lab.report.html import step_view
from lab.report.jsonout import step_dict
from lab.results.verdicts import StepResult
from lab.scenario.model import Scenario, Zone

__all__ = ["code_json", "run_verdict", "step_event", "step_start"]


def code_json(code: Code | None, detail: str = "") -> dict[str, Any] | None:
    """A code as the page shows it (its message, what happened in this step), with what
    docs/reference.md says of it (``verified``; ``kind`` ``lab``: no Windows code)."""
    if code is None:
        return None
    return {"name": code.name, "code": code.hex if code.numeric else None,
            "message": code.message, "detail": detail, "kind": code.kind,
            "verified": code.verified}


def step_start(client: str, index: int, action: str, location: str) -> dict[str, Any]:
    return {"client": client, "n": index + 1, "action": action, "location": location}


def _resolution(step: StepResult, network: Network, hosts: HostMap,
                domain_joined: bool, domain: str | None) -> dict[str, Any] | None:
    """How the MP's name resolved for the request the step made (None: no request)."""
    if step.target is None:
        return None
    parts = urlsplit(step.target)
    host = parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0]  # as spelled in the URL
    port = parts.port or (443 if parts.scheme == "https" else 80)
    machine = Machine(step.client, Zone(step.location), domain_joined, domain)
    resolves = network.can_resolve(machine, host)
    listening = hosts.get(host, port) if resolves else None
    return {"host": host, "port": port, "zone": step.location, "resolves": resolves,
            "why": network.rule(host).why,
            "answer": f"{LOOPBACK}:{listening}" if listening is not None else None}


def _certificate(cert: x509.Certificate) -> dict[str, Any]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    cn = cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {"subject": cert.subject.rfc4514_string(), "san": names,
            "issuer": str(cn[0].value) if cn else cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%d")}


def _url_rows(step: StepResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if step.revocation is None:
        return rows
    for element in step.revocation.elements:
        for u in (*element.urls, *element.delta_urls):
            rows.append({"url": u.url, "certificate": element.subject, "result": u.result,
                         "error": code_json(u.error), "detail": u.detail,
                         "seconds": f"{u.simulated_ms / 1000:g}", "crl": u.crl})
    return rows


def step_event(step: StepResult, *, scenario: Scenario, network: Network, hosts: HostMap
               ) -> dict[str, Any]:
    """Everything the timeline shows of one finished step, in the order it happened: the
    name resolution, the TLS handshake (the server's certificate, OpenSSL's verdict), each
    CDP URL with its result and simulated time, the verdict, the CMTrace lines, why, the fix."""
    tz = scenario.info.timezone
    spec = next(c for c in scenario.clients if c.name == step.client)
    view = step_view(step_dict(step), step.index, f"s{step.number}", log=step.log,
                     timezone=tz)
    resolution = _resolution(step, network, hosts, spec.domain_joined, scenario.ad_domain)
    tls_kind = view["tls"]["kind"]
    handshake = "none"
    if tls_kind == "https" and resolution is not None and resolution["answer"] is not None:
        handshake = "done" if step.chain else "failed"
    rev = step.revocation
    return {
        "client": step.client, "n": step.number, "automatic": step.automatic,
        "action": step.action,
        "location": step.location, "outcome": step.outcome, "connection": step.connection,
        "mp": step.mp, "target": step.target,
        "resolution": resolution,
        "tls": {"kind": tls_kind, "host": view["tls"]["host"], "handshake": handshake,
                "certificate": _certificate(step.chain[0]) if step.chain else None,
                "openssl": view["d"]["openssl"]},
        "crl": {"check": step.crl_check, "source": step.crl_source, "options": step.options,
                "checked": bool(rev and rev.checked),
                "status": rev.status if rev is not None else None,
                "seconds": f"{(rev.simulated_ms if rev else 0) / 1000:g}"},
        "urls": _url_rows(step),
        "verdict": {
            "error": code_json(step.error, step.error_message)
            if step.outcome == "fail" else None,
            "winhttp": code_json(step.winhttp_error),
            "flags": flag_names(step.flags), "flags_value": f"0x{step.flags:x}",
            "http_status": step.http_status,
        },
        "log": [{k: row[k] for k in ("type", "letter", "text", "component", "file", "time",
                                     "thread")} for row in view["log"]],
        "trace": render_step_trace(step, timezone=tz)
        if rev is not None and rev.checked else None,
        "explanation": step.explanation, "fix": step.fix, "notes": step.notes,
        "seconds": view["seconds"],
        "expected": step.expected, "met": step.met,
    }


def run_verdict(steps: Sequence[StepResult], *, wall: dt.timedelta,
                fix: Mapping[str, Any] | None, faults: Sequence[str] = ()) -> dict[str, Any]:
    """The run's verdict: connected, or the first failing step with its error and fix."""
    failed = next((s for s in steps if s.outcome == "fail"), None)
    judged = [s for s in steps if s.expected is not None]
    out: dict[str, Any] = {
        "passed": failed is None,
        "steps": len(steps),
        "simulated": f"{sum(s.simulated_ms for s in steps) / 1000:g}",
        "wall": f"{wall.total_seconds():.2f}",
        "expectations": ({"met": sum(1 for s in judged if s.met), "total": len(judged)}
                         if judged else None),
        "faults": list(faults),
        "fix_switches": dict(fix) if fix is not None else None,
        "failure": None,
    }
    if failed is not None:
        out["failure"] = {
            "client": failed.client, "n": failed.number, "action": failed.title,
            "location": failed.location,
            "error": code_json(failed.error, failed.error_message),
            "winhttp": code_json(failed.winhttp_error),
            "flags": flag_names(failed.flags), "http_status": failed.http_status,
            "explanation": failed.explanation, "fix": failed.fix,
        }
    return out
