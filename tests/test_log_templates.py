"""Every log line the lab writes is either quoted in docs/reference.md or marked as the lab's.

A user pastes these lines into tickets as "what ConfigMgr / IIS printed", so each must have
the shape of a line the reference quotes (host names, URLs, GUIDs, numbers, quoted names and
WinHTTP names may differ) or begin with ``Lab: `` (:data:`lab.client.agent.LAB_MARK`). The
walk runs every bundled scenario plus a few cases that reach the rarer lines, and gathers
every client log line, every MP_RegistrationManager.log line and every IIS W3C line.

Beyond the shape: ``Options=`` values must be quoted ones (else the line is marked), CMTrace
entries carry no source line number of one build, and ``sc-win32-status`` holds a value only
where a quoted IIS line gives it for that status (else 0 and a ``#Remark: Lab:`` line).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest
from labtest import CCMSETUP, ROOT, SCENARIOS, contoso, mp_table, site_table

from lab.client.agent import LAB_MARK, QUOTED_OPTIONS
from lab.logs.cmtrace import format_entries
from lab.logs.w3c import QUOTED_WIN32, REMARK, format_w3c, parse_w3c
from lab.results.logline import LogLine
from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text

REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def _client(name: str, ccmsetup: str, cert: str, *steps: tuple[str, str]) -> str:
    text = f'\n[[client]]\nname = "{name}"\nccmsetup = "{ccmsetup}"\n{cert}\n'
    for action, location in steps:
        text += f'[[client.step]]\naction = "{action}"\nlocation = "{location}"\n'
    return text


# Lines the bundled scenarios may not reach: a client whose certificate lacks Client
# Authentication at each kind of step, and a /NoCRLCheck client refused by IIS.
EXTRA = {
    "no-usable-cert": (
        '[scenario]\ntitle = "no usable certificate"\n\n' + site_table("check_crl = false")
        + contoso() + mp_table()
        + _client("PC01", f"{CCMSETUP} /NoCRLCheck",
                  '[client.cert]\nissuer = "Contoso-CA"\neku = ["server_auth"]',
                  ("install", "intranet"))
        + _client("PC02", f"{CCMSETUP} /NoCRLCheck", "",
                  ("install", "intranet"), ("register", "intranet"),
                  ("location", "intranet"), ("policy", "intranet"))),
    # a site refresh on the internet makes two requests: the second does not retry the LDAP
    # URL that failed in the first (and takes the HTTP CRL from memory)
    "failed-url-in-step": (SCENARIOS / "seed4-internet-client-http-cdp-published.toml")
    .read_text(encoding="utf-8")
    .replace('action = "inventory"\nlocation = "internet"',
             'action = "location"\nlocation = "internet"'),
}


@pytest.fixture(scope="module")
def walked(certs_dir: Path) -> RunResult:
    scenarios = [*load_all(sorted(SCENARIOS.glob("*.toml"))),
                 *(load_scenario_text(t, name=n) for n, t in EXTRA.items())]
    return asyncio.run(run_loaded(scenarios, certs=certs_dir))


def _quoted_lines() -> list[str]:
    """Every line inside a fenced block of the reference, and every inline code span."""
    lines: list[str] = []
    fenced = False
    for line in REFERENCE.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            lines.append(line)
        else:
            lines += re.findall(r"`([^`]+)`", line)
    return lines


def shape(line: str) -> str:
    """The line with what may differ between samples made placeholders."""
    s = re.sub(r"\s+", " ", line).strip()
    s = s.replace("…", "").replace("...", "")
    s = re.sub(r"GUID:[0-9A-Fa-f-]+", "<GUID>", s)
    s = re.sub(r"(?i)\b(?:https?|ldap)://[^\s,']*", "<URL>", s)
    s = re.sub(r"<[A-Za-z_ ]+>(?:\.[\w<>-]+)+(?:/[^\s,']*)?", "<HOST>", s)
    s = re.sub(r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s,']*)?", "<HOST>", s)
    s = re.sub(r"WINHTTP_CALLBACK_STATUS_FLAG_[A-Z_]+", "<FLAG>", s)
    s = re.sub(r"\bERROR_WINHTTP_[A-Z_]+", "<WINHTTP_ERROR>", s)
    s = re.sub(r"StatusText=.*$", "StatusText=<TEXT>", s)
    s = re.sub(r"'[^']*'", "'<S>'", s)
    s = re.sub(r"\b0x[0-9a-fA-F]+\b", "<N>", s)
    s = re.sub(r"\b[0-9A-F]{8,}\b", "<N>", s)
    s = re.sub(r"\d+", "<N>", s)
    return re.sub(r"\s+", " ", s).strip()


QUOTED_SHAPES = frozenset(shape(line) for line in _quoted_lines())


def _client_lines(run: RunResult) -> list[LogLine]:
    return [line for r in run.scenarios for c in r.clients for s in c.steps for line in s.log]


def _mp_lines(run: RunResult) -> list[LogLine]:
    return [line for r in run.scenarios for line in r.mp_log]


def test_the_walk_sees_the_rare_lines(walked: RunResult) -> None:
    texts = [line.text for line in _client_lines(walked)]
    assert any("Text=CCM_E_NO_CLIENT_PKI_CERT" in t for t in texts)
    assert any("Options=192" in t for t in texts)
    assert any(t.startswith(LAB_MARK) for t in texts)
    assert any("ccmsetup started" in t for t in texts)
    assert _mp_lines(walked) != []


def test_every_log_line_is_quoted_or_marked(walked: RunResult) -> None:
    unquoted = sorted({(line.file, line.text) for line in
                       [*_client_lines(walked), *_mp_lines(walked)]
                       if not line.text.startswith(LAB_MARK)
                       and shape(line.text) not in QUOTED_SHAPES})
    assert unquoted == []


def test_options_values_are_quoted_ones_or_the_line_is_marked(walked: RunResult) -> None:
    quoted = {int(v, 0) for line in _quoted_lines()
              for v in re.findall(r"Options=(0x[0-9a-fA-F]+|\d+)", line)}
    assert quoted >= QUOTED_OPTIONS
    for line in _client_lines(walked):
        found = re.search(r"Options=(\d+)", line.text)
        if found and int(found.group(1)) not in QUOTED_OPTIONS:
            assert line.text.startswith(LAB_MARK), line.text


def test_the_install_step_logs_the_url_it_requested(walked: RunResult) -> None:
    (result,) = [r for r in walked.scenarios if r.scenario.name == "no-usable-cert"]
    by_client = {c.name: c.steps for c in result.clients}
    (install,) = by_client["PC01"]
    (line,) = [t.text for t in install.log if "CCM_E_NO_CLIENT_PKI_CERT" in t.text]
    assert "URL=https://IBCM-Intra.contoso.local/SMS_MP/.sms_aut?MPLIST, Port=0" in line
    assert line.startswith(LAB_MARK)  # /NoCRLCheck: Options=192
    assert [t.file for t in install.log if "CCM_E_NO_CLIENT_PKI_CERT" in t.text] == [
        "ccmsetup.log"]


def test_cmtrace_entries_carry_no_build_line_number(walked: RunResult) -> None:
    entries = format_entries([*_client_lines(walked), *_mp_lines(walked)], dt.UTC)
    files = {m for e in entries for m in re.findall(r'file="([^"]*)"', e)}
    assert files == {""}


def test_every_w3c_line_is_quoted_or_remarked(walked: RunResult) -> None:
    # the registry's values are in the reference
    for status, sub, win32 in QUOTED_WIN32:
        assert (f" {status} {sub} {win32} " in REFERENCE
                or (f"{status}.{sub}" in REFERENCE and f"**{win32}**" in REFERENCE))
    seen_remark = False
    for result in walked.scenarios:
        for content in format_w3c(result.mp_records, server_ip="127.0.0.1").values():
            remarks = [line for line in content.splitlines() if line.startswith("#Remark")]
            assert all(r.startswith(REMARK) for r in remarks)
            seen_remark |= bool(remarks)
            for row in parse_w3c(content):
                key = (int(row["sc-status"]), int(row["sc-substatus"]),
                       int(row["sc-win32-status"]))
                if key in QUOTED_WIN32:
                    continue
                label = f"{key[0]}.{key[1]}" if key[1] else str(key[0])
                assert key[2] == 0, row
                assert any(f" {label} lines " in r for r in remarks), (label, remarks)
    assert seen_remark


def test_the_403_13_line_writes_no_unquoted_win32_status(walked: RunResult) -> None:
    (dmz,) = [r for r in walked.scenarios
              if r.scenario.name == "dmz-mp-cannot-check-client-certs"]
    (content,) = format_w3c(dmz.mp_records, server_ip="127.0.0.1").values()
    (row,) = [r for r in parse_w3c(content) if r["sc-status"] == "403"]
    assert (row["sc-substatus"], row["sc-win32-status"]) == ("13", "0")
    assert (f"{REMARK}sc-win32-status of the 403.13 lines is 0: no quoted IIS line gives its "
            "value; the lab's own check said 0x80092013 (CRYPT_E_REVOCATION_OFFLINE)"
            in content)


def test_the_shape_keeps_what_must_match() -> None:
    quoted = ("[CCMHTTP] ERROR: URL=http://SCCM.acc.local/ccm_system/request, Port=80, "
              "Options=224, Code=0, Text=CCM_E_BAD_HTTP_STATUS_CODE")
    ours = ("[CCMHTTP] ERROR: URL=https://IBCM-Intra.contoso.local/SMS_MP/.sms_aut?MPLIST, "
            "Port=443, Options=63, Code=0, Text=CCM_E_BAD_HTTP_STATUS_CODE")
    assert shape(quoted) == shape(ours)
    assert shape(ours) != shape(ours.replace("Text=CCM_E_BAD", "Text=CCM_E_GOOD"))
    # the lines the reference lists as "not verified" are not quoted
    assert shape("Client PKI cert is available.") not in QUOTED_SHAPES


def _templates(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, literal pieces) of every log text written in ``path``: the text
    argument of ``self._log(obs, file, component, text)``, ``line(text)`` and ``log(text)``."""
    import ast

    found: list[tuple[int, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "_log" and len(node.args) >= 4:
            text = node.args[3]
        elif isinstance(func, ast.Name) and func.id in ("line", "log") and node.args:
            text = node.args[0]
        else:
            continue
        if isinstance(text, ast.Constant) and isinstance(text.value, str):
            pieces = [text.value]
        elif isinstance(text, ast.JoinedStr):
            pieces = [v.value for v in text.values
                      if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        else:
            continue
        found.append((node.lineno, [p for p in pieces if len(p.strip()) >= 3]))
    return found


@pytest.mark.parametrize("module", ["lab/client/agent.py", "lab/servers/mp_app.py"])
def test_the_walk_reaches_every_log_template(walked: RunResult, module: str) -> None:
    """Every place that writes a log line wrote one during the walk, so the checks above saw
    it: a new template needs a scenario (or an EXTRA case here) that reaches it."""
    templates = _templates(ROOT / module)
    assert templates != []
    texts = [line.text for line in [*_client_lines(walked), *_mp_lines(walked)]]
    missed = [(n, pieces) for n, pieces in templates
              if not any(all(p in t for p in pieces) for t in texts)]
    assert missed == []
