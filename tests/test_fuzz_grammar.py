"""A grammar fuzzer for scenario files: every bad input ends in exit 0, 1 or 2 (issue 23).

Documents are built from the scenario format's grammar (every section and key the loader
reads, with its valid values: every zone, action, CA kind, EKU, fault), and then a few of
their fields get hostile values: empty, huge, negative, zero, boundary dates (1950 and
before, a century ahead), control characters and escape sequences, ports that are not
numbers, unbalanced brackets, wrong TOML types (integers, floats, booleans, dates, arrays,
tables where a string belongs, and the reverse).

The properties:

* loading gives a :class:`~lab.scenario.model.Scenario` or a :class:`ScenarioError` whose
  message is one line naming the file (and, where the key exists in the file, the key);
* ``ibcm-lab run`` on the file exits 0, 1 or 2, never 3 (the lab's own bug code), and prints
  no traceback; an exit 2 is one line on stderr naming the file.

The loader must refuse at load time whatever the later stages (the PKI build, the client,
the servers) cannot handle. The default run keeps the example counts small; ``pytest
--run-slow`` (or ``-m slow`` with it) runs the ``slow`` variants with many more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.errors import ScenarioError
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import EKU, Action, CAKind, Zone

INTRA, INTERNET = "IBCM-Intra.contoso.local", "IBCM-Internet.public.com"
CCMSETUP = (f"ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 SMSMP=https://{INTRA} "
            f"CCMHOSTNAME={INTERNET}")


def examples(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example])


# ------------------------------------------------------------------------------------------
# A TOML writer (every value type the format can hold, control characters escaped)
# ------------------------------------------------------------------------------------------


def _string(value: str) -> str:
    out = json.dumps(value, ensure_ascii=False)
    # JSON leaves DEL and C1 as they are; TOML wants every control character escaped
    return "".join(f"\\u{ord(c):04x}" if 0x7F <= ord(c) <= 0x9F else c for c in out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def dump_toml(doc: dict[str, Any]) -> str:
    """Tables as ``[name]``/``[[name]]`` sections (one level of nesting as dotted headers),
    so the loader's locator finds the lines of keys, as in a hand-written file."""
    lines: list[str] = []

    def table(header: str, data: dict[str, Any], array: bool) -> None:
        lines.append(f"[[{header}]]" if array else f"[{header}]")
        subs: list[tuple[str, Any]] = []
        for k, v in data.items():
            sub_table = isinstance(v, dict) and k in ("cert", "reachable")
            sub_array = (isinstance(v, list) and bool(v)
                         and all(isinstance(x, dict) for x in v) and k in ("step", "cert"))
            if sub_table or sub_array:
                subs.append((k, v))
            else:
                lines.append(f"{_string(k)} = {_value(v)}")
        for k, v in subs:
            if isinstance(v, dict):
                table(f"{header}.{k}", v, False)
            else:
                for item in v:
                    table(f"{header}.{k}", item, True)

    for name, section in doc.items():
        if isinstance(section, list) and section and all(isinstance(x, dict) for x in section):
            for item in section:
                table(name, item, True)
        elif isinstance(section, dict):
            table(name, section, False)
        else:
            lines.insert(0, f"{_string(name)} = {_value(section)}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# The grammar: a valid document, and where its values may go
# ------------------------------------------------------------------------------------------


def base_document() -> dict[str, Any]:
    return {
        "scenario": {"title": "fuzz", "description": "a fuzzed scenario", "source": "fuzz",
                     "timezone": "UTC"},
        "site": {"code": "P01", "check_crl": False, "https_only": True},
        "ca": [{"name": "Contoso-CA", "kind": "enterprise", "host": "ca01.contoso.local",
                "domain": "contoso.local"}],
        "mp": {"intranet_fqdn": INTRA, "internet_fqdn": INTERNET,
               "cert": {"issuer": "Contoso-CA", "san": [INTRA, INTERNET]}},
        "client": [{"name": "PC01", "ccmsetup": CCMSETUP,
                    "step": [{"action": "install", "location": "intranet", "expect": "ok"},
                             {"action": "register", "location": "internet"}]}],
    }


# (path, valid values) of every key; a path is a tuple of keys and list indexes
ZONES = [z.value for z in Zone]
ACTIONS = [a.value for a in Action]
FIELDS: list[tuple[tuple[Any, ...], list[Any]]] = [
    (("scenario", "title"), ["t", "A title"]),
    (("scenario", "description"), ["", "d"]),
    (("scenario", "source"), ["", "s"]),
    (("scenario", "timezone"), ["UTC", "Asia/Tokyo", "Europe/Berlin"]),
    (("site", "code"), ["P01", "ABC"]),
    (("site", "check_crl"), [True, False]),
    (("site", "https_only"), [True, False]),
    (("site", "trusted_roots"), [["Contoso-CA"]]),
    (("ca", 0, "name"), ["Contoso-CA"]),
    (("ca", 0, "kind"), [k.value for k in CAKind]),
    (("ca", 0, "host"), ["ca01.contoso.local"]),
    (("ca", 0, "domain"), ["contoso.local"]),
    (("ca", 0, "cdp"), [["ldap", "http"], ["http"], ["http://pki.contoso.com/x.crl"]]),
    (("ca", 0, "aia"), [["ldap", "http"], ["http"]]),
    (("ca", 0, "delta_cdp"), [["http"]]),
    (("ca", 0, "max_names"), [1, 2]),
    (("ca", 0, "crl_this_update"), ["-1d", "-1h"]),
    (("ca", 0, "crl_next_update"), ["+7d", "+1h"]),
    (("ca", 0, "crl_sign"), [True, False]),
    (("ca", 0, "revoked"), [False]),
    (("mp", "intranet_fqdn"), [INTRA]),
    (("mp", "internet_fqdn"), [INTERNET]),
    (("mp", "zone"), ZONES),
    (("mp", "domain_joined"), [True, False]),
    (("mp", "cert", "issuer"), ["Contoso-CA"]),
    (("mp", "cert", "san"), [[INTRA], [INTRA, INTERNET]]),
    (("mp", "cert", "eku"), [[e.value for e in EKU], ["server_auth"]]),
    (("mp", "cert", "cdp"), [["http"], ["ldap", "http"]]),
    (("mp", "cert", "revoked"), [True, False]),
    (("mp", "cert", "subject"), ["IBCM-Intra", "x"]),
    (("mp", "cert", "not_before"), ["-1d", "-366d"]),
    (("mp", "cert", "not_after"), ["+365d", "+1h"]),
    (("client", 0, "name"), ["PC01"]),
    (("client", 0, "domain_joined"), [True, False]),
    (("client", 0, "ccmsetup"), [CCMSETUP]),
    (("client", 0, "fqdn"), ["PC01.contoso.local"]),
    (("client", 0, "cert"), [False, {"not_before": "-1d"}]),
    (("client", 0, "clock_skew"), ["-2h", "+5m"]),
    (("client", 0, "trusted_roots"), [["Contoso-CA"]]),
    (("client", 0, "url_retrieval"), ["per-url", "accumulative"]),
    (("client", 0, "step", 0, "action"), ACTIONS),
    (("client", 0, "step", 0, "location"), ZONES),
    (("client", 0, "step", 0, "expect"), ["ok", "fail", "CRYPT_E_REVOCATION_OFFLINE",
                                          "0x80092013", "403.13"]),
    (("client", 0, "step", 1, "action"), ACTIONS),
    (("client", 0, "step", 1, "location"), ZONES),
    (("network", "reachable", "ca01.contoso.local"), [ZONES, ["intranet"]]),
    (("faults", "cdp_down"), [True, False]),
    (("faults", "cdp_delay"), ["20s", "1s"]),
    (("faults", "cdp_status"), [404, 500]),
    (("faults", "cdp_content_type"), ["text/html"]),
    (("faults", "crl_body"), ["truncated", "garbage"]),
    (("faults", "crl_foreign_signature"), [True, False]),
    (("faults", "crl_huge"), [1, 10]),
    (("faults", "crl_stale"), [True, False]),
    (("faults", "ldap_down"), [True, False]),
    (("faults", "ldap_delay"), ["20s"]),
    (("faults", "mp_down"), [True, False]),
    (("faults", "mp_status"), [500, 503]),
]

CONTROL = "".join(map(chr, [*range(0x00, 0x20), 0x7F, 0x85, 0x9B]))
HOSTILE_TEXT = [
    "", " ", "\t", "x" * 5000, "\x1b]0;PWNED\x07", "\x1b[2J\x1b[H", "a\nb",
    "x\n== fuzz: forged  -> PASSED", "\u202eevil", "\x7f", "\x9b31m", "]LOG]!><time=",
    "<![LOG[forged]LOG]!>", "../../etc/passwd", "NUL\x00byte", "\ud7ff\ue000",
    # ccmsetup values the client cannot use (issue 23's examples and their class)
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME={INTERNET}:abc",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME=[{INTERNET}",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME={INTERNET}:0",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME={INTERNET}:99999",
    "ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME=https://[::1]:x/",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME=\x1b[2J{INTERNET}",
    "ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMCERTSEL=\"Subject:\x07bad\"",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA}:70000",
    f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://[{INTRA}",
    # times: X.509 starts in 1950; the loader allows 60 years either way
    "-21900d", "-21901d", "-25000d", "-36500d", "+21900d", "+36500d", "-0s", "0s",
    "0.000001s", "-99999999999999999999d", "1e9d", "-1d-1d", "nan", "inf",
    # URLs
    "http://", "http://:80/x.crl", "http://[::1/x.crl", "http://h:99999/x.crl",
    "ldap://h/\x7f", "file:///x", "http://h/" + "a" * 3000,
]
HOSTILE = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    st.text(alphabet=CONTROL + "aZ:/.[]-", max_size=20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 65535, 65536, 10**6, 10**6 + 1, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from([dt.datetime(1949, 12, 31, 23, 59, 59), dt.date(1950, 1, 1),
                     dt.datetime(9999, 12, 31)]),
    st.lists(st.sampled_from(["", "ldap", "http", "\x1b", 1]), max_size=3),
    st.sampled_from([[], {}, {"a": 1}, [{}], [[]]]),
)


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        if isinstance(key, int):
            while len(node) <= key:
                node.append({})
            node = node[key]
        else:
            node = node.setdefault(key, {})
    node[path[-1]] = value


@st.composite
def documents(draw: st.DrawFn, hostile: int = 3) -> dict[str, Any]:
    """A document from the grammar: every field valid or left out, then up to ``hostile``
    fields hostile."""
    doc = base_document()
    for path, values in FIELDS:
        if draw(st.integers(0, 14)) == 0:
            _set(doc, path, draw(st.sampled_from(values)))
    for _ in range(draw(st.integers(1, hostile))):
        path, values = draw(st.sampled_from(FIELDS))
        # half the time a hostile value, else a valid one: runs get past the loader too
        _set(doc, path, draw(st.one_of(HOSTILE, st.sampled_from(values))))
    if draw(st.integers(0, 9)) == 0:  # a second client, every zone and action once
        doc["client"].append({"name": "PC02", "ccmsetup": CCMSETUP, "domain_joined": False,
                              "step": [{"action": a, "location": z}
                                       for a, z in zip(ACTIONS, ZONES, strict=False)]})
    return doc


# ------------------------------------------------------------------------------------------
# The properties
# ------------------------------------------------------------------------------------------


def check_load(doc: dict[str, Any]) -> None:
    text = dump_toml(doc)
    try:
        load_scenario_text(text, file="fuzz.toml")
    except ScenarioError as e:
        message = str(e)
        event("refused")
        assert "\n" not in message and "\r" not in message, message
        assert message.startswith("fuzz.toml"), message
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in message), message
    else:
        event("loaded")


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def check_run(doc: dict[str, Any], certs: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_text(dump_toml(doc), encoding="utf-8")
        code, out, err = run_cli("run", str(path), "--certs", str(certs))
    event(f"exit {code}")
    assert code in (0, 1, 2), f"exit {code}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], err
    for raw in (out, err):
        assert "\x1b" not in raw and "\x07" not in raw, raw[:2000]


@examples(30)
@given(documents())
def test_the_loader_refuses_in_one_line_or_loads(doc: dict[str, Any]) -> None:
    check_load(doc)


@examples(4)
@given(documents(hostile=1))
def test_run_on_grammar_documents_exits_0_1_or_2(certs_dir: Path, doc: dict[str, Any]) -> None:
    check_run(doc, certs_dir)


@pytest.mark.slow
@examples(1500)
@given(documents())
def test_the_loader_refuses_in_one_line_or_loads_slow(doc: dict[str, Any]) -> None:
    check_load(doc)


@pytest.mark.slow
@examples(150)
@given(documents(hostile=2))
def test_run_on_grammar_documents_exits_0_1_or_2_slow(certs_dir: Path,
                                                      doc: dict[str, Any]) -> None:
    check_run(doc, certs_dir)


# ------------------------------------------------------------------------------------------
# The classes the fuzzer found, pinned (each ended in exit 3 before)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, why", [
    (f"{INTERNET}:abc", "the port 'abc' is not a TCP port number"),
    (f"{INTERNET}:99999", "the port '99999' is not a TCP port number"),
    (f"{INTERNET}:0", "the port '0' is not a TCP port number"),
    (f"[{INTERNET}", "is not a host name"),
    ("https://[::1", "is not a host name"),
])
def test_a_ccmhostname_no_client_can_use_is_refused_at_load_time(
        certs_dir: Path, tmp_path: Path, value: str, why: str) -> None:
    doc = base_document()
    doc["client"][0]["ccmsetup"] = CCMSETUP.replace(f"CCMHOSTNAME={INTERNET}",
                                                    f"CCMHOSTNAME={value}")
    path = tmp_path / "bad.toml"
    path.write_text(dump_toml(doc), encoding="utf-8")
    code, _out, err = run_cli("run", str(path), "--certs", str(certs_dir))
    assert code == 2, err
    assert f"{path}:" in err and "client[0].ccmsetup: CCMHOSTNAME=" in err and why in err, err


def test_a_ccmhostname_with_a_good_port_still_runs(certs_dir: Path, tmp_path: Path) -> None:
    """The twin: a port that is a port is the client's mistake to trip over, not bad input."""
    doc = base_document()
    doc["client"][0]["ccmsetup"] = CCMSETUP.replace(f"CCMHOSTNAME={INTERNET}",
                                                    f"CCMHOSTNAME={INTERNET}:8443")
    path = tmp_path / "port.toml"
    path.write_text(dump_toml(doc), encoding="utf-8")
    code, _out, err = run_cli("run", str(path), "--certs", str(certs_dir))
    assert code in (0, 1), err


@pytest.mark.parametrize("offset, refused", [("-21900d", False), ("-21901d", True),
                                              ("-25000d", True), ("-36500d", True)])
def test_dates_x509_cannot_encode_are_refused_at_load_time(
        certs_dir: Path, tmp_path: Path, offset: str, refused: bool) -> None:
    doc = base_document()
    doc["mp"]["cert"]["not_before"] = offset
    path = tmp_path / "old.toml"
    path.write_text(dump_toml(doc), encoding="utf-8")
    code, _out, err = run_cli("run", str(path), "--certs", str(certs_dir))
    if refused:
        assert code == 2, err
        assert "mp.cert.not_before: expected a time within 60 years of the run" in err, err
    else:
        assert code in (0, 1), err
