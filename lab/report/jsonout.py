"""The JSON report: one object per scenario, in the documented contract.

``ibcm-lab run --format json FILE`` prints that object; with a folder or several paths it
prints a JSON array of them (the shape follows the command line, not the number of files).
Field names are a contract (docs/scenario-format.md#json-output); new fields may be added,
none renamed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from lab.codes import Code, flag_names
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult, format_offset


def _code(code: Code | None, message: str | None = None) -> dict[str, Any] | None:
    if code is None:
        return None
    return {
        "name": code.name,
        "code": code.hex if code.numeric else None,
        "message": message or code.message,
        "kind": code.kind,
    }


def step_dict(step: StepResult) -> dict[str, Any]:
    rev = step.revocation
    revocation: dict[str, Any] = {"checked": bool(rev and rev.checked), "urls": []}
    if rev is not None:
        revocation["status"] = rev.status
        revocation["simulated_ms"] = rev.simulated_ms
        # Every URL CryptoAPI tried, in order: per certificate (top-down), its CDP URLs,
        # then the delta CRL URLs its base CRL named.
        for element in rev.elements:
            for u in (*element.urls, *element.delta_urls):
                revocation["urls"].append({
                    "url": u.url,
                    "result": u.result,
                    "error": _code(u.error),
                    "simulated_ms": u.simulated_ms,
                    "certificate": element.subject,
                    "detail": u.detail,
                    "source": u.origin or None,
                    "crl": u.crl,
                    "crl_number": u.crl_number,
                    "http_status": u.http_status,
                })
    error = None
    if step.outcome == "fail" and step.error is not None:
        # The code's text as Windows words it, then the step's own words (which start in
        # lower case: they continue a sentence, so they follow a colon).
        message = step.error.message
        joint = " In this step: " if message.endswith(".") else ": "
        error = _code(step.error, f"{message}{joint}{step.error_message}"
                      if step.error_message else None)
    return {
        "number": step.number,
        "automatic": step.automatic,
        "action": step.action,
        "location": step.location,
        "at": (None if step.at is None
               else step.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"),
        "since_start": (None if step.since_start is None
                        else format_offset(step.since_start)),
        "target": step.target,
        "outcome": step.outcome,
        "expected": step.expected,
        "met": step.met,
        "error": error,
        "winhttp": {
            "error": _code(step.winhttp_error),
            "flags": flag_names(step.flags),
            "flags_value": step.flags,
        },
        "http_status": step.http_status,
        "openssl": None if step.openssl is None else {
            "verify_code": step.openssl.verify_code,
            "verify_message": step.openssl.verify_message,
            "agrees": step.openssl.agrees,
        },
        "revocation": revocation,
        "explanation": step.explanation,
        "fix": step.fix,
        "identifiers": step.identifiers,
        "connection": step.connection,
        "mp": step.mp,
        "crl_check": step.crl_check,
        "crl_source": step.crl_source,
        "options": step.options,
        "simulated_ms": step.simulated_ms,
        "notes": step.notes,
        "log": [{"file": line.file, "component": line.component, "type": line.severity,
                 "text": line.text} for line in step.log],
    }


def scenario_dict(result: ScenarioResult) -> dict[str, Any]:
    s = result.scenario
    refusal = result.pki.mp_refusal
    return {
        "scenario": s.name,
        "title": s.info.title,
        "source": s.info.source,
        "file": s.file,
        "passed": result.passed,
        "pki": {"mp_certificate_refused": refusal.message if refusal else None},
        "clients": [{"name": c.name, "steps": [step_dict(st) for st in c.steps]}
                    for c in result.clients],
    }


def render_json(run: RunResult, *, as_list: bool) -> str:
    """One scenario object, or (``as_list``) a JSON array of them."""
    items = [scenario_dict(s) for s in run.scenarios]
    payload: Any = items if as_list else items[0]
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
