"""The JUnit XML report of a run or a matrix, for CI systems that display test results.

``ibcm-lab run --format junit``: one ``<testsuite>`` per scenario, one ``<testcase>`` per
step. A step whose expectation was not met is a ``<failure>`` (message: what was expected,
what happened, the explanation and the step's identifiers; type: the error name; body:
expected vs actual, the fix, the log lines and the certutil-style revocation trace). A step
whose expected failure happened is a passing test case; its story is in ``<system-out>``.

``ibcm-lab matrix --format junit``: one ``<testsuite>`` per row (a configuration), one
``<testcase>`` per cell (a client situation); a cell that is not ``ok`` is a ``<failure>``.

Times are the lab's **simulated** seconds (Windows time-outs are simulated, never slept), so
a CI system's "slowest tests" list shows where a client would have waited. The output
follows the JUnit schema Jenkins' xUnit plugin validates against (``junit-10.xsd``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from lab.report.certutil import render_step_trace
from lab.report.jsonout import step_dict
from lab.results.grid import DIMENSIONS, SITUATION_BY_KEY
from lab.results.logline import LogLine
from lab.results.matrix import Cell, MatrixResult, Row, row_name
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import AUTOMATIC_WHY, StepResult

# Characters XML 1.0 cannot carry at all (scenario text is user input).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SEVERITY = {1: " ", 2: "W", 3: "E"}


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (control characters, lone
    surrogates); ElementTree escapes the rest."""
    return _NOT_XML.sub("\ufffd", text)


def _seconds(ms: int | float) -> str:
    return f"{ms / 1000:.3f}"


# -- one step, from its step_dict (the fields of ``run --format json``) ----------------------

def summary(step: Mapping[str, Any]) -> str:
    """``ok`` or ``FAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013`` (+ ``HTTP 403.4``)."""
    if step["outcome"] == "ok":
        return "ok"
    parts = ["FAIL"]
    error = step.get("error")
    if error:
        parts.append(str(error["name"]))
        if error.get("code") and error["code"] != error["name"]:
            parts.append(str(error["code"]))
    status = step.get("http_status")
    if status and status != "200":
        parts.append(f"HTTP {status}")
    return " ".join(parts)


def testcase_name(index: int, step: Mapping[str, Any]) -> str:
    """``5-inventory@internet``: the step's ``number`` (``1a`` for an automatic step after
    install), else ``index`` + 1 (``index`` is 0-based)."""
    return f"{step.get('number') or index + 1}-{step['action']}@{step['location']}"


def failure_type(step: Mapping[str, Any]) -> str:
    """The error name; ``UnexpectedSuccess`` when a failure was expected and none came."""
    error = step.get("error")
    if step["outcome"] == "fail":
        return str(error["name"]) if error else "FAIL"
    return "UnexpectedSuccess"


def failure_message(step: Mapping[str, Any]) -> str:
    """One paragraph: expected vs actual, the explanation, the identifiers."""
    head = f"expected {step['expected'] or '(nothing)'}, got {summary(step)}."
    parts = [head, str(step["explanation"])]
    ids = step.get("identifiers") or []
    if ids:
        parts.append("Identifiers: " + ", ".join(ids) + ".")
    return " ".join(p for p in parts if p)


def _log_line(line: Mapping[str, Any]) -> str:
    mark = _SEVERITY.get(int(line.get("type", 1)), " ")
    return f"  {mark} {line['file']}: {line['text']}"


def _evidence(step: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    winhttp = step.get("winhttp") or {}
    if winhttp.get("error"):
        flags = ", ".join(winhttp.get("flags") or []) or "none"
        lines.append(f"winhttp:   {winhttp['error']['name']} ({winhttp['error']['code']}), "
                     f"flags {flags} (0x{int(winhttp.get('flags_value') or 0):x})")
    if step.get("http_status"):
        lines.append(f"http:      {step['http_status']}")
    openssl = step.get("openssl")
    if openssl:
        agree = "agrees" if openssl["agrees"] else "DISAGREES"
        lines.append(f"openssl:   verify code {openssl['verify_code']} "
                     f"({openssl['verify_message']}); {agree} with the Windows engine")
    if step.get("crl_check") is not None:
        lines.append(f"crl check: {'on' if step['crl_check'] else 'off'}, decided by "
                     f"{step.get('crl_source') or '?'}")
    for url in (step.get("revocation") or {}).get("urls") or []:
        err = f" {url['error']['code']} {url['error']['name']}" if url.get("error") else ""
        label = "delta url: " if url.get("crl") == "delta" else "crl url:   "
        lines.append(f"{label}{url['result']:<13} {url['url']} "
                     f"[{url['simulated_ms'] / 1000:g} s]{err}")
    return lines


def step_details(step: Mapping[str, Any], *, log: Sequence[str] | None = None,
                 trace: str | None = None) -> str:
    """The body of a test case: expected vs actual, why, fix, evidence, log lines, trace.

    ``log`` replaces the step dict's log lines (the run passes CMTrace entries with their
    times); ``trace`` is the certutil-style revocation trace, when there is one.
    """
    lines = [
        f"expected:  {step['expected'] or '(no expectation)'}"
        + (f" ({AUTOMATIC_WHY}: not a step of the scenario)" if step.get("automatic") else ""),
        f"actual:    {summary(step)}",
        f"met:       {'yes' if step['met'] else 'NO'}",
    ]
    if step.get("target"):
        lines.append(f"target:    {step['target']}")
    if step.get("mp"):
        where = step["connection"] or step["location"]
        lines.append(f"mp:        {step['mp']} (the client treats its location as {where})")
    lines += _evidence(step)
    lines.append(f"why:       {step['explanation']}")
    if step.get("fix"):
        lines.append(f"fix:       {step['fix']}")
    for note in step.get("notes") or []:
        lines.append(f"note:      {note}")
    log_lines = list(log) if log is not None else [_log_line(x) for x in step.get("log") or []]
    if log_lines:
        lines += ["", "log lines of the step:", *log_lines]
    if trace:
        lines += ["", "revocation trace (certutil -verify -urlfetch shape):", trace.rstrip("\n")]
    return xml_text("\n".join(lines) + "\n")


def _run_log(lines: Sequence[LogLine]) -> list[str]:
    return [_log_line({"file": ln.file, "type": ln.severity, "text": ln.text}) for ln in lines]


# -- XML ---------------------------------------------------------------------------------------

def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        el.text = xml_text(text)
    return el


def _properties(suite: ET.Element, props: Sequence[tuple[str, str]]) -> None:
    el = _el(suite, "properties")
    for name, value in props:
        _el(el, "property", name=name, value=value)


def _testcase(suite: ET.Element, *, name: str, classname: str, ms: int, failed: bool,
              message: str, kind: str, body: str) -> None:
    case = _el(suite, "testcase", name=name, classname=classname, time=_seconds(ms))
    if failed:
        _el(case, "failure", body, message=message, type=kind)
    else:
        _el(case, "system-out", body)


def _suite(root: ET.Element, name: str, cases: int, failures: int, ms: int,
           **extra: str) -> ET.Element:
    return _el(root, "testsuite", name=name, tests=str(cases), failures=str(failures),
               errors="0", skipped="0", time=_seconds(ms), **extra)


def _document(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def _totals(root: ET.Element, name: str) -> None:
    suites = root.findall("testsuite")
    root.set("name", name)
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    root.set("time", f"{sum(float(s.get('time', '0')) for s in suites):.3f}")


def _scenario_suite(root: ET.Element, result: ScenarioResult) -> None:
    s = result.scenario
    steps: list[StepResult] = result.steps
    failures = sum(1 for st in steps if not st.met)
    extra = {"file": s.file} if s.file else {}
    suite = _suite(root, s.name, len(steps), failures, sum(st.simulated_ms for st in steps),
                   **extra)
    props = [("title", s.info.title), ("source", s.info.source), ("timezone", s.info.timezone)]
    if s.file:
        props.append(("file", s.file))
    if result.pki.mp_refusal is not None:
        props.append(("mp_certificate_refused", result.pki.mp_refusal.message))
    _properties(suite, props)
    tz = s.info.timezone
    for step in steps:
        d = step_dict(step)
        body = step_details(d, log=_run_log(step.log),
                            trace=render_step_trace(step, timezone=tz))
        if step.log_refs:
            body += "".join(f"open:      {ref}\n" for ref in step.log_refs)
        _testcase(suite, name=step.name, classname=f"{s.name}.{step.client}",
                  ms=step.simulated_ms, failed=not step.met, message=failure_message(d),
                  kind=failure_type(d), body=body)
    story = [s.info.title]
    if s.info.source:
        story.append(f"source: {s.info.source}")
    if s.info.description:
        story += ["", s.info.description.strip()]
    _el(suite, "system-out", "\n".join(story) + "\n")


def render_run_junit(run: RunResult) -> str:
    """The run as JUnit XML: a ``<testsuites>`` with one ``<testsuite>`` per scenario."""
    root = ET.Element("testsuites")
    for result in run.scenarios:
        _scenario_suite(root, result)
    _totals(root, "ibcm-lab run")
    return _document(root)


# -- a matrix ----------------------------------------------------------------------------------

def row_label(config: Mapping[str, str]) -> str:
    """``cdp=ldap, site_crl=on, ...``: the configuration of a matrix row."""
    return ", ".join(f"{d.key}={config[d.key]}" for d in DIMENSIONS if d.key in config)


def cell_message(cell: Cell) -> str:
    """The short name, the explanation and the identifiers of the failing step."""
    failed = _failed_step(cell)
    ids = failed.get("identifiers") if failed else None
    text = f"{cell.short}: {cell.explanation}"
    if ids:
        text += " Identifiers: " + ", ".join(ids) + "."
    return text


def _failed_step(cell: Cell) -> Mapping[str, Any] | None:
    if cell.failed_step is None or not 0 < cell.failed_step <= len(cell.steps):
        return None
    return cell.steps[cell.failed_step - 1]


def cell_details(cell: Cell) -> str:
    """Every step of the cell in one line, then the failing step's details."""
    sit = SITUATION_BY_KEY.get(cell.situation)
    lines = [f"client:    {sit.title if sit else cell.situation}",
             f"cell:      {cell.short}", ""]
    for i, step in enumerate(cell.steps):
        lines.append(f"  {testcase_name(i, step):<24} {summary(step)}")
    failed = _failed_step(cell)
    text = "\n".join(lines) + "\n"
    if failed is not None:
        text += f"\nfailing step {cell.failed_step}:\n" + step_details(failed)
    elif cell.steps:
        text += "\n" + xml_text(f"why:       {cell.explanation}\n")
    return xml_text(text)


def _row_suite(root: ET.Element, row: Row, index: int) -> None:
    cells = list(row.cells.values())
    failures = sum(1 for c in cells if c.short != "ok")
    ms = sum(int(st.get("simulated_ms") or 0) for c in cells for st in c.steps)
    suite = _suite(root, row_label(row.config), len(cells), failures, ms,
                   id=str(index), package=row_name(row.config))
    _properties(suite, [(d.key, row.config[d.key]) for d in DIMENSIONS if d.key in row.config])
    classname = row_name(row.config)
    for cell in cells:
        ms_cell = sum(int(st.get("simulated_ms") or 0) for st in cell.steps)
        failed = _failed_step(cell)
        _testcase(suite, name=cell.situation, classname=classname, ms=ms_cell,
                  failed=cell.short != "ok", message=cell_message(cell),
                  kind=failure_type(failed) if failed else cell.short,
                  body=cell_details(cell))


def render_matrix_junit(result: MatrixResult) -> str:
    """The matrix as JUnit XML: one ``<testsuite>`` per row, one ``<testcase>`` per cell."""
    root = ET.Element("testsuites")
    for i, row in enumerate(result.rows):
        _row_suite(root, row, i)
    _totals(root, "ibcm-lab matrix")
    return _document(root)


__all__ = ["cell_details", "cell_message", "failure_message", "failure_type",
           "render_matrix_junit", "render_run_junit", "row_label", "step_details", "summary",
           "testcase_name", "xml_text"]
