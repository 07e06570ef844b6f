"""Hostile input for scenario files, ``check-cert`` and ccmsetup lines (issue 6).

What a user who feeds the lab garbage must get, whatever the garbage:

* scenario files (:func:`lab.scenario.loader.load_scenario_text`, ``ibcm-lab run``): a
  :class:`~lab.errors.ScenarioError` (exit 2, one line naming the file) or a report (exit 0 or
  1), never an internal error (exit 3), a traceback or a hang;
* certificate files (``ibcm-lab check-cert``): exit 2 and one line for unreadable input, a
  report otherwise; a huge file is refused before it is read;
* ccmsetup lines (:func:`lab.configmgr.ccmsetup.parse_ccmsetup`, ``ibcm-lab ccmsetup``): a
  :class:`~lab.errors.CcmsetupSyntaxError` with a one-line message, or findings whose
  corrected lines parse.

The properties run on random TOML documents (written by the small TOML writer below), random
mutations of the bundled scenarios, random and mangled certificate files, and random ccmsetup
lines full of quotes and backslashes. Example counts are small and derandomized so CI stays
fast and repeatable; ``IBCM_LAB_HOSTILE_SCALE=20`` runs twenty times as many locally.

Each problem these tests found is fixed and pinned by a test of the correct behaviour (the
section "Known bugs" at the end). Should a new one turn up, pin it with an
``xfail(strict=True)`` test and list it in :data:`KNOWN_CRASHES` so the properties step
around it until it is fixed.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import ipaddress
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st
from labtest import SCENARIOS, peak_memory

from lab.cli import main
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.configmgr.lint import lint_ccmsetup, render_text
from lab.configmgr.winargs import join_windows_command_line, split_windows_command_line
from lab.errors import CcmsetupSyntaxError, ScenarioError, UsageError
from lab.scenario.loader import load_scenario, load_scenario_text
from lab.tools.checkcert import MAX_FILE_BYTES

SCALE = max(1, int(os.environ.get("IBCM_LAB_HOSTILE_SCALE", "1")))
HANG = 120
"""Seconds :func:`time_limit` lets a block run: long enough for a busy 2-core machine."""


def examples(n: int) -> settings:
    """Hypothesis settings: ``n`` examples (times the scale), the same ones on every run."""
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


# ------------------------------------------------------------------------------------------
# Known bugs the properties step around (each pinned by an xfail test at the end)
# ------------------------------------------------------------------------------------------

KNOWN_CRASHES: tuple[tuple[str, str, str], ...] = ()
"""Failures the properties skip with :func:`hypothesis.reject` instead of reporting again."""

_INTERNAL = re.compile(r"^ibcm-lab: internal error: (\w+): (.*?)(?: \(set IBCM_LAB_DEBUG|$)",
                       re.MULTILINE)


def known_crash(kind: str, message: str) -> bool:
    return any(kind == k and re.search(p, message) for k, p, _ in KNOWN_CRASHES)


def known_cli_crash(err: str) -> bool:
    """An exit-3 line of the CLI that is one of :data:`KNOWN_CRASHES`."""
    m = _INTERNAL.search(err)
    return m is not None and known_crash(m.group(1), m.group(2))


def known_multiline(e: ScenarioError) -> bool:
    """No known multi-line error is left (test_key_with_a_line_break_keeps_the_error_on_one_line
    pins the fix)."""
    return False


def has_line_break_key(doc: Any) -> bool:
    """The same bug seen from the CLI: some key of ``doc`` holds a line break."""
    return any(len(f"x{k}x".splitlines()) > 1 for k in _keys(doc, set()))


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


class _TookTooLong(BaseException):
    """A BaseException, so that ``except Exception`` in the code under test (the CLI's
    internal-error handler) does not turn it into an exit code."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "it") -> Iterator[None]:
    """Fail when the block runs longer than ``seconds`` (interrupts Python code and regular
    expressions with SIGALRM; where there is no SIGALRM the block just runs). A guard against
    a hang, never a speed check: give it :data:`HANG` seconds (speed is for ibcm-lab bench)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: object) -> None:
        raise _TookTooLong

    outer, _ = signal.getitimer(signal.ITIMER_REAL)  # an enclosing time_limit's time left
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    try:
        yield
    except _TookTooLong:
        pytest.fail(f"{what} still running after {seconds} s (or an enclosing limit)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL,
                             max(outer - (time.monotonic() - started), 0.001))


def cli(*argv: str | Path) -> tuple[int, str, str]:
    """``ibcm-lab ARGV`` in-process: exit code, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ibcm-lab: error: "), err
    return lines[0]


def assert_cli_contract(code: int, out: str, err: str, *, names: str | None = None) -> None:
    """Exit 0 or 1 with a report, or exit 2 with one error line (naming ``names``)."""
    assert code in (0, 1, 2), err
    assert "Traceback" not in err + out
    if code == 2:
        line = one_error_line(err)
        if names is not None:
            assert names in line, line
    else:
        assert out.strip(), err


# ------------------------------------------------------------------------------------------
# A small TOML writer (tomllib only reads)
# ------------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_string(s: str) -> str:
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump_toml(doc: dict[str, Any]) -> str:
    """TOML text that :func:`tomllib.loads` reads back as ``doc``: plain values first, then
    ``[table]`` and ``[[array of tables]]`` sections, as a person would write them."""
    lines: list[str] = []

    def table(path: list[str], t: dict[str, Any]) -> None:
        for k, v in t.items():
            if not isinstance(v, dict) and not _is_table_array(v):
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in t.items():
            sub = [*path, _toml_key(k)]
            if isinstance(v, dict):
                lines.extend(["", f"[{'.'.join(sub)}]"])
                table(sub, v)
            elif _is_table_array(v):
                for item in v:
                    lines.extend(["", f"[[{'.'.join(sub)}]]"])
                    table(sub, item)

    table([], doc)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------


def _bundled() -> dict[str, dict[str, Any]]:
    return {p.stem: tomllib.loads(p.read_text(encoding="utf-8"))
            for p in sorted(SCENARIOS.glob("*.toml"))}


BUNDLED = _bundled()


def _keys(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            found.add(k)
            _keys(v, found)
    elif isinstance(node, list):
        for v in node:
            _keys(v, found)
    return found


KNOWN_KEYS = sorted(_keys(list(BUNDLED.values()), {"fqdn", "reachable", "network"}))

INTERESTING = [
    "", " ", "ok", "fail", "OK", "intranet", "internet", "vpn", "enterprise", "public",
    "ldap", "http", "install", "register", "location", "policy", "inventory", "server_auth",
    "client_auth", "Contoso-CA", "P01", "AUTO", "UTC", "Asia/Tokyo", "../../etc/passwd",
    "-1d", "+7d", "30m", "0s", "-0d", "+99999999999d", "1e5d", "+0.0000001s", "per-url",
    "accumulative", "ldap:///", "http://", "http://[::1/x", "http://a:99999/x", "file://",
    "ldap:///CN=x,DC=y?z", "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl",
    "IBCM-Intra.contoso.local", "a" * 64, "a" * 254, "-a-.b", "é", "\u202e", "\x00", "\t\n",
    "0x87D00269", "CRYPT_E_REVOCATION_OFFLINE", "403.13", "ccmsetup.exe",
    "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local",
    'ccmsetup.exe "unbalanced', "ccmsetup.exe /retry:" + "9" * 40, "ccmsetup.exe /bogus",
]

_PIECES = ["a", "é", "-", ".", "0", "9", " ", '"', "\\", "\u202e", "\U0001f600"]

hostile_strings = st.one_of(
    st.text(max_size=30),
    st.sampled_from(INTERESTING),
    st.builds(lambda piece, n: piece * n, st.sampled_from(_PIECES), st.integers(60, 3000)),
)
scalars = st.one_of(
    hostile_strings,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.dates(),
    st.datetimes(),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(min_size=1, max_size=12))
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
toml_documents = st.dictionaries(keys, toml_values, max_size=8)


def _slots(node: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key or index) pair of a parsed TOML document."""
    if isinstance(node, dict):
        for k in list(node):
            yield node, k
            yield from _slots(node[k])
    elif isinstance(node, list):
        for i in range(len(node)):
            yield node, i
            yield from _slots(node[i])


def _tables(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _tables(v)
    elif isinstance(node, list):
        for v in node:
            yield from _tables(v)


def _retyped(value: Any) -> list[Any]:
    """``value`` as other TOML types."""
    out: list[Any] = [str(value), [value], {"value": value}, True, 0, -1, 2**63 - 1, 1.5, []]
    if isinstance(value, str):
        out += [value * 50, value.upper(), value[: len(value) // 2], f" {value} ", value + "\x00"]
        if re.fullmatch(r"[+-][0-9.]+[smhd]", value):
            out += [value[0] + "9" * 12 + value[-1], value[0] + "9" * 400 + ".5" + value[-1],
                    "+3000000d", "-800000d"]
    if isinstance(value, list):
        out += [value * 3, value[:1], [*value, 1], list(reversed(value))]
    return out


MUTATIONS = ("delete", "replace", "retype", "string", "add-key", "duplicate", "empty")
LEAF_MUTATIONS = ("leaf", "leaf", "leaf", "delete")
"""Mostly a string value replaced by another string: the document still loads more often."""


@st.composite
def mutated_scenario(draw: st.DrawFn, names: list[str] | None = None, at_most: int = 3,
                     ops: tuple[str, ...] = MUTATIONS) -> tuple[str, dict[str, Any]]:
    """A bundled scenario's parsed document with 1 to ``at_most`` random mutations."""
    name = draw(st.sampled_from(names or sorted(BUNDLED)))
    doc = copy.deepcopy(BUNDLED[name])
    for _ in range(draw(st.integers(1, at_most))):
        op = draw(st.sampled_from(ops))
        if op == "leaf":
            leaves = [(c, k) for c, k in _slots(doc) if isinstance(c[k], str)]
            parent, key = draw(st.sampled_from(leaves))
            parent[key] = draw(hostile_strings)
            continue
        slots = list(_slots(doc))
        if op == "add-key" or not slots:
            table = draw(st.sampled_from(list(_tables(doc))))
            table[draw(keys)] = draw(toml_values)
            continue
        parent, key = draw(st.sampled_from(slots))
        value = parent[key]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(toml_values)
        elif op == "retype":
            parent[key] = draw(st.sampled_from(_retyped(value)))
        elif op == "string":
            parent[key] = draw(hostile_strings)
        elif op == "duplicate":
            parent[key] = value * 2 if isinstance(value, list) else [value, value]
        else:
            parent[key] = type(value)() if isinstance(value, list | dict | str) else 0
    return name, doc


# ------------------------------------------------------------------------------------------
# The TOML writer itself
# ------------------------------------------------------------------------------------------


@examples(80)
@given(toml_documents)
def test_the_toml_writer_round_trips(doc: dict[str, Any]) -> None:
    assert tomllib.loads(dump_toml(doc)) == doc


def test_the_toml_writer_round_trips_every_bundled_scenario() -> None:
    assert BUNDLED, SCENARIOS
    for name, doc in BUNDLED.items():
        assert tomllib.loads(dump_toml(doc)) == doc, name


# ------------------------------------------------------------------------------------------
# Scenario files: the loader raises ScenarioError and nothing else
# ------------------------------------------------------------------------------------------


def load_or_refuse(text: str) -> None:
    """Load ``text``; a refusal must be one ScenarioError line naming the file, in bounded
    time. Known bugs are rejected (not reported again)."""
    try:
        with time_limit(HANG, "loading the scenario"):
            load_scenario_text(text, file="hostile.toml")
    except ScenarioError as e:
        message = str(e)
        assert message.startswith("hostile.toml"), message
        if len(message.splitlines()) != 1 and known_multiline(e):
            reject()
        assert len(message.splitlines()) == 1, message
    except Exception as e:
        if known_crash(type(e).__name__, str(e)):
            reject()
        raise


@examples(200)
@given(st.text(max_size=300))
@example("")
@example("\ufeff[scenario]\ntitle = 't'\n")
@example("[scenario]\n" * 2)
@example("[[ca]]\n[ca]\n")
@example('x = """unterminated')
def test_loader_on_random_text(text: str) -> None:
    load_or_refuse(text)


_FRAGMENTS = ["[scenario]", "[[ca]]", "[mp]", "[mp.cert]", "[[client]]", "[[client.step]]",
              "[site]", "[network.reachable]", "title = 't'", 'name = "Contoso-CA"',
              'kind = "enterprise"', 'host = "ca01.contoso.local"', 'domain = "contoso.local"',
              'issuer = "Contoso-CA"', 'intranet_fqdn = "a.b"', 'name = "PC01"',
              'ccmsetup = "ccmsetup.exe /UsePKICert"', 'action = "install"',
              'location = "intranet"', "cert = false", "x = [", "= 1", '"a.b" = ["vpn"]',
              "a.b.c = 1", "x = {", "}", "]", "#", '"""', "'''", "\\", "\r\n"]


@examples(200)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)),
                max_size=40).map("\n".join))
def test_loader_on_toml_like_fragments(text: str) -> None:
    load_or_refuse(text)


@examples(200)
@given(toml_documents)
def test_loader_on_random_toml_documents(doc: dict[str, Any]) -> None:
    load_or_refuse(dump_toml(doc))


@examples(300)
@given(mutated_scenario())
def test_loader_on_mutated_bundled_scenarios(mutant: tuple[str, dict[str, Any]]) -> None:
    load_or_refuse(dump_toml(mutant[1]))


@examples(60)
@given(st.binary(max_size=400), st.sampled_from([b"", b"\xef\xbb\xbf", b"[scenario]\n"]))
def test_load_scenario_on_random_bytes(data: bytes, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "hostile.toml"
        path.write_bytes(prefix + data)
        try:
            load_scenario(path)
        except ScenarioError as e:
            assert str(e).startswith(str(path)), e
            if not known_multiline(e):
                assert len(str(e).splitlines()) == 1, e
        except Exception as e:
            if known_crash(type(e).__name__, str(e)):
                reject()
            raise


# ------------------------------------------------------------------------------------------
# Scenario files through `ibcm-lab run`
# ------------------------------------------------------------------------------------------

# Small scenarios without [faults] (a mutated crl_huge would build a huge CRL).
RUNNABLE = [n for n in ("seed3-smsmp-with-https", "seed3-without-usepkicert",
                        "server-mp-cert-expired", "client-no-certificate",
                        "seed2-mp-cert-both-names")
            if n in BUNDLED and "faults" not in BUNDLED[n]]


def run_file(path: Path, certs: Path) -> tuple[int, str, str]:
    with time_limit(HANG, f"ibcm-lab run {path.name}"):
        return cli("run", path, "--certs", certs)


@examples(15)
@given(mutated_scenario(RUNNABLE, at_most=1, ops=LEAF_MUTATIONS))
def test_run_on_mutated_scenarios_exits_0_1_or_2(certs_dir: Path,
                                                 mutant: tuple[str, dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{mutant[0]}.toml"
        path.write_text(dump_toml(mutant[1]), encoding="utf-8")
        code, out, err = run_file(path, certs_dir)
    event(f"exit {code}")
    if code == 3 and known_cli_crash(err):
        reject()
    if code == 2 and len(err.strip().splitlines()) > 1 and has_line_break_key(mutant[1]):
        reject()
    assert_cli_contract(code, out, err, names=None)
    if code == 2 and "\n" not in err.strip():
        assert str(path) in err


def test_a_rewritten_bundled_scenario_still_passes(certs_dir: Path,
                                                         tmp_path: Path) -> None:
    """The twin of the mutation property: an unmutated (rewritten) scenario runs and passes."""
    name = RUNNABLE[0]
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_toml(BUNDLED[name]), encoding="utf-8")
    code, out, err = run_file(path, certs_dir)
    assert (code, err) == (0, ""), out


def _symlink_loop(folder: Path) -> Path:
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "x.toml").write_bytes(b"[scenario")
    return folder


@pytest.mark.parametrize(("what", "make", "message"), [
    ("not utf-8", lambda d: _write(d / "x.toml", b"[scenario]\ntitle = '\xff\xfe'\n"),
     "not UTF-8"),
    ("nul bytes", lambda d: _write(d / "x.toml", b"[scenario]\x00\x00\n"), "TOML syntax error"),
    ("empty", lambda d: _write(d / "x.toml", b""), "scenario"),
    ("only a BOM", lambda d: _write(d / "x.toml", b"\xef\xbb\xbf"), "scenario"),
    ("binary", lambda d: _write(d / "x.toml", bytes(range(256)) * 4), "x.toml"),
    ("a folder without toml", lambda d: d, "no *.toml"),
    ("a folder named .toml", lambda d: _mkdir(d / "y.toml"), "y.toml"),
    ("a folder with a symlink loop", lambda d: _symlink_loop(d), "x.toml"),
    ("a missing file", lambda d: d / "missing.toml", "no such file"),
])
def test_run_on_unusable_files_is_one_line_and_exit_2(
        certs_dir: Path, tmp_path: Path, what: str, make: Callable[[Path], Path],
        message: str) -> None:
    path = make(tmp_path)
    with time_limit(HANG, f"ibcm-lab run on {what}"):
        code, _out, err = run_file(path, certs_dir)
    assert code == 2, err
    assert message in one_error_line(err), err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path.parent


# ------------------------------------------------------------------------------------------
# ccmsetup lines: the parser and the linter
# ------------------------------------------------------------------------------------------

_WORDS = ["ccmsetup.exe", "ccmsetup", "C:\\Program Files\\x\\ccmsetup.exe", "/UsePKICert",
          "/NoCRLCheck", "/mp:", "/source:", "/source: ", "/retry:", "/config:", "/?",
          "/ExcludeFeatures:", "/MP=", "-UsePKICert", "\u2013NoCRLCheck", "/SMSSITECODE=P01",
          "SMSSITECODE=", "SMSMP=", "SMSMPLIST=", "CCMHOSTNAME=", "CCMALWAYSINF=1",
          "CCMFIRSTCERT=yes", "CCMCERTSEL=", "CCMCERTISSUERS=", "CCMSETUPCMD=", "CCMHTTPPORT=",
          "CCMALLOWSILENTREBOOT", "smsmp=", "https://", "http://", "ftp://",
          "IBCM-Intra.contoso.local", "IBCM-Internet.public.com", "/CCM_Proxy_MutualAuth/72",
          "P01", "AUTO", ":443", '"', '""', '"""', "\\", "\\\\", '\\"', "'", "\u201c", "\u201d",
          " ", "  ", "\t", ";", ":", "=", "/", "\r\n", "\x00"]
ccmsetup_lines = st.lists(st.one_of(st.sampled_from(_WORDS), st.text(max_size=6)),
                          max_size=24).map("".join)
quote_soup = st.lists(st.sampled_from(['"', "\\", "a", " ", '\\"', '""', "\t", "b c"]),
                      max_size=30).map("".join)


def _parse_or_refuse(line: str) -> None:
    try:
        parse_ccmsetup(line)
    except CcmsetupSyntaxError as e:
        assert len(str(e).splitlines()) == 1, str(e)
        assert len(str(e)) < 1000, str(e)[:200]
    except ValueError as e:
        if known_crash("ValueError", str(e)):
            reject()
        raise


@examples(400)
@given(ccmsetup_lines)
@example('ccmsetup.exe /source:"C:\\dir\\" SMSMP=x')
@example('ccmsetup.exe CCMCERTSEL="a""b c"')
@example('"' * 7)
@example("\\" * 9 + '"')
def test_parse_ccmsetup_raises_only_syntax_errors(line: str) -> None:
    with time_limit(HANG, "parse_ccmsetup"):
        _parse_or_refuse(line)


@examples(300)
@given(quote_soup)
def test_unbalanced_quotes_name_the_column(line: str) -> None:
    try:
        args = split_windows_command_line(line)
    except CcmsetupSyntaxError as e:
        m = re.search(r"the quote at column (\d+)", str(e))
        assert m is not None, str(e)
        assert line[int(m.group(1)) - 1] == '"', (line, str(e))
        return
    assert all(" " not in a or '"' in line for a in args)


@examples(300)
@given(st.lists(st.text(max_size=12), max_size=8))
@example(['a"b', "c\\", '\\"', ""])
def test_join_is_the_inverse_of_split(args: list[str]) -> None:
    assert split_windows_command_line(join_windows_command_line(args)) == args


SITES = st.fixed_dictionaries({
    "site_code": st.sampled_from([None, "P01"]),
    "intranet_fqdn": st.sampled_from([None, "IBCM-Intra.contoso.local"]),
    "internet_fqdn": st.sampled_from([None, "IBCM-Internet.public.com"]),
    "https_only": st.booleans(),
})


@examples(250)
@given(st.one_of(ccmsetup_lines, quote_soup), SITES)
def test_linter_findings_come_with_parseable_corrections(line: str,
                                                         site: dict[str, Any]) -> None:
    with time_limit(HANG, "lint_ccmsetup"):
        try:
            report = lint_ccmsetup(line, **site)
        except UsageError as e:
            assert len(str(e).splitlines()) == 1, str(e)
            return
        except ValueError as e:
            if known_crash("ValueError", str(e)):
                reject()
            raise
        render_text(report)
    corrected = [f.corrected for f in report.findings] + [report.corrected]
    for fixed in corrected:
        if fixed is not None:
            parse_ccmsetup(fixed)
    assert report.exit_code == (1 if report.errors else 0)


@examples(25)
@given(st.one_of(ccmsetup_lines, quote_soup), st.sampled_from(["text", "json"]))
def test_ccmsetup_command_exits_0_1_or_2(line: str, fmt: str) -> None:
    if "\x00" in line:
        line = line.replace("\x00", "")  # an argv string cannot hold NUL
    with time_limit(HANG, "ibcm-lab ccmsetup"):
        code, out, err = cli("ccmsetup", "--site-code", "P01", "--intranet-fqdn",
                             "IBCM-Intra.contoso.local", "--format", fmt, "--", line)
    if code == 3 and known_cli_crash(err):
        reject()
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("ibcm-lab: error: "), err
    else:
        assert out and not err


@pytest.mark.parametrize("line", [
    'ccmsetup.exe CCMCERTSEL="' + "a " * 20000,
    "ccmsetup.exe SMSMP=" + "a" * 100_000,
    'ccmsetup.exe CCMCERTSEL="' + "\\" * 100_000,
    "ccmsetup.exe " + " " * 1_000_000 + "/UsePKICert",
    "ccmsetup.exe /mp:" + ";".join(["a.b"] * 10_000),
    'ccmsetup.exe "a ' * 300,
])
def test_long_lines_are_linted_in_bounded_time(line: str) -> None:
    with time_limit(HANG, "lint_ccmsetup"):
        report = lint_ccmsetup(line, site_code="P01", intranet_fqdn="IBCM-Intra.contoso.local")
        text = render_text(report)
    assert text.strip()


# ------------------------------------------------------------------------------------------
# Certificate files for check-cert
# ------------------------------------------------------------------------------------------

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
_NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
FQDN = "mp01.contoso.local"


def make_cert(extensions: list[tuple[x509.ExtensionType, bool]] | None = None, *,
              subject: x509.Name | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                      FQDN)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostile CA")]))
               .public_key(_LEAF_KEY.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_NOW - dt.timedelta(days=1))
               .not_valid_after(_NOW + dt.timedelta(days=300)))
    if extensions is None:
        extensions = [(x509.SubjectAlternativeName([x509.DNSName(FQDN)]), False),
                      (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    return builder.sign(_CA_KEY, hashes.SHA256())


GOOD = make_cert()
GOOD_DER = GOOD.public_bytes(serialization.Encoding.DER)
GOOD_PEM = GOOD.public_bytes(serialization.Encoding.PEM)
PASSWORD = b"Pa55-w0rd!"
GOOD_PFX = pkcs12.serialize_key_and_certificates(
    b"mp", _LEAF_KEY, GOOD, None, serialization.BestAvailableEncryption(PASSWORD))


def check_cert(data: bytes, *extra: str, suffix: str = ".bin") -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"hostile{suffix}"
        path.write_bytes(data)
        with time_limit(HANG, "check-cert"):
            return cli("check-cert", path, "--no-replay", *extra)


def assert_check_cert_contract(code: int, out: str, err: str) -> None:
    if code == 3 and known_cli_crash(err):
        reject()
    assert_cli_contract(code, out, err, names="hostile")


def test_the_unmangled_certificates_are_read() -> None:
    """The twins of the mangling properties below."""
    for data, extra in ((GOOD_DER, ()), (GOOD_PEM, ()),
                        (GOOD_PFX, ("--password", PASSWORD.decode()))):
        code, out, err = check_cert(data, *extra)
        assert code in (0, 1) and not err, err
        assert FQDN in out


@examples(80)
@given(st.binary(max_size=3000))
@example(b"\x30")
@example(b"\x30\x84\xff\xff\xff\xff")
@example(b"\x30\x80" + b"\x00" * 10)
@example(b"\x00" * 100)
def test_random_bytes_are_one_line_and_exit_2(data: bytes) -> None:
    code, out, err = check_cert(data)
    assert code == 2, out
    one_error_line(err)


@st.composite
def mangled(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes flipped, inserted or removed."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "truncate":
            del out[at:]
        elif op == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=40))
        else:
            del out[at:at + draw(st.integers(1, 40))]
    return bytes(out)


@examples(80)
@given(mangled(GOOD_DER))
def test_mangled_der_is_a_report_or_one_line(data: bytes) -> None:
    assert_check_cert_contract(*check_cert(data, suffix=".cer"))


_LABELS = ["CERTIFICATE", "X509 CERTIFICATE", "PKCS7", "PRIVATE KEY", "TRUSTED CERTIFICATE",
           "CERTIFICATE REQUEST", "X", "CERTIFICATE#"]


@st.composite
def garbled_pem(draw: st.DrawFn) -> bytes:
    text = GOOD_PEM.decode()
    parts = draw(st.lists(st.one_of(
        st.just(text),
        st.sampled_from(_LABELS).map(lambda label: f"-----BEGIN {label}-----\n"),
        st.sampled_from(_LABELS).map(lambda label: f"-----END {label}-----\n"),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n"
                         "-", max_size=80),
        st.text(max_size=20),
    ), min_size=1, max_size=8))
    blob = "".join(parts).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(blob), mangled(blob)))


@examples(80)
@given(garbled_pem())
@example(b"-----BEGIN CERTIFICATE-----\n" + GOOD_PEM)
@example(GOOD_PEM.replace(b"-----END CERTIFICATE-----", b""))
@example(GOOD_PEM.replace(b"\n", b"\r\n"))
@example(GOOD_PEM + b"\x00" * 100 + GOOD_PEM)
def test_pem_with_garbage_is_a_report_or_one_line(data: bytes) -> None:
    assert_check_cert_contract(*check_cert(data, suffix=".pem"))


@examples(40)
@given(mangled(GOOD_PFX))
def test_mangled_pkcs12_is_a_report_or_one_line(data: bytes) -> None:
    assert_check_cert_contract(*check_cert(data, "--password", PASSWORD.decode(),
                                           suffix=".pfx"))


@examples(25)
@given(st.text(min_size=1, max_size=40).filter(lambda p: "\x00" not in p))
@example("x" * 10_000)
def test_wrong_pkcs12_password_is_one_clear_line(password: str) -> None:
    code, out, err = check_cert(GOOD_PFX, f"--password={password}", suffix=".pfx")
    if password == PASSWORD.decode():
        assert code in (0, 1)
        return
    assert (code, out) == (2, "")
    assert one_error_line(err).endswith("wrong password or not a PKCS#12 file")


def test_pkcs12_without_a_password_says_how_to_give_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IBCM_LAB_PFX_PASSWORD", raising=False)
    code, _, err = check_cert(GOOD_PFX, suffix=".pfx")
    assert code == 2 and "--password" in one_error_line(err)


def _huge(path: Path, size: int) -> Path:
    """A real ``size``-byte file (not sparse), of the content that is slowest to parse."""
    chunk = (b"-----BEGIN CERTIFICATE-----\n" * 40_000)[: 1024 * 1024]
    with path.open("wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
        f.write(chunk[: size % len(chunk)])
    return path


@pytest.mark.parametrize("how", ["file", "chain"])
def test_a_50_mb_file_is_refused_before_it_is_read(tmp_path: Path, how: str) -> None:
    huge = _huge(tmp_path / "huge.pem", 50 * 1024 * 1024)
    good = tmp_path / "good.pem"
    good.write_bytes(GOOD_PEM)
    argv = [huge] if how == "file" else [good, "--chain", huge]
    with peak_memory() as peak, time_limit(HANG, "check-cert on 50 MB"):
        code, out, err = cli("check-cert", *argv, "--no-replay")
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert "too large" in line and str(huge) in line
    assert f"({50 * 1024 * 1024} bytes;" in line  # the size from stat(), not a count read
    assert peak[0] < 4 * 1024 * 1024, peak  # the 50 MB were never read


def test_a_file_at_the_size_limit_is_read_in_bounded_time(tmp_path: Path) -> None:
    data = os.urandom(MAX_FILE_BYTES)
    path = tmp_path / "limit.bin"
    path.write_bytes(data)
    with peak_memory() as peak, time_limit(HANG, "check-cert on 1 MiB"):
        code, _, err = cli("check-cert", path, "--no-replay")
    assert code == 2 and one_error_line(err)
    assert peak[0] < 32 * MAX_FILE_BYTES


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "cert.pem"
    os.mkfifo(fifo)
    with time_limit(HANG, "check-cert on a named pipe"):
        code, _, err = cli("check-cert", fifo, "--no-replay")
    assert code == 2 and "not a regular file" in one_error_line(err)


def _uri(text: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier._init_without_validation(text)


def _dns(text: str) -> x509.DNSName:
    return x509.DNSName._init_without_validation(text)


_SAN = (x509.SubjectAlternativeName([x509.DNSName(FQDN)]), False)
_EKU = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
ODD_URLS = ["http://[::1/x.crl", "ldap:///CN=%zz,DC=a", "http://a:99999/x.crl", "http://a:x/y",
            "file://\\\\srv\\share\\x.crl", "http://\u00e9.example/x.crl", "gopher://x",
            "http://", "ldap://", "http://user:pw@h.contoso.local/x.crl", "HTTP://H/X.CRL",
            "http://h.contoso.local/" + "a" * 5000, "ldap:///CN=x?y?z?w?v?u"]


def _cdp(urls: list[str]) -> tuple[x509.CRLDistributionPoints, bool]:
    return (x509.CRLDistributionPoints(
        [x509.DistributionPoint([_uri(u)], None, None, None) for u in urls]), False)


def _aia(urls: list[str]) -> tuple[x509.AuthorityInformationAccess, bool]:
    return (x509.AuthorityInformationAccess(
        [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, _uri(u))
         for u in urls]
        + [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, _dns("ocsp"))]), False)


ODD_CERTS: dict[str, Callable[[], x509.Certificate]] = {
    "unknown critical extension": lambda: make_cert([
        (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), True),
        _SAN, _EKU]),
    "10000 SAN names": lambda: make_cert([
        (x509.SubjectAlternativeName([x509.DNSName(f"h{i}.contoso.local")
                                      for i in range(10_000)]), False), _EKU]),
    "every kind of SAN": lambda: make_cert([(x509.SubjectAlternativeName([
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")), _uri("http://x"),
        x509.RFC822Name("a@b"),
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3")),
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x03abc")]),
        False), _EKU]),
    "odd DNS names": lambda: make_cert([(x509.SubjectAlternativeName([
        _dns("*.*.contoso.local"), _dns("a b.contoso.local"), _dns("-.x"), _dns("."),
        _dns("x" * 300), _dns(""), _dns("mp01.contoso.local.")]), False), _EKU]),
    "an EKU of no known purpose": lambda: make_cert([
        _SAN, (x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.2.3.4")]), True)]),
    "an empty EKU extension": lambda: make_cert([_SAN, (x509.UnrecognizedExtension(
        x509.ObjectIdentifier("2.5.29.37"), b"\x30\x00"), False)]),
    "odd CDP URLs": lambda: make_cert([_cdp(ODD_URLS), _EKU, _SAN]),
    "a CDP by relative name": lambda: make_cert([(x509.CRLDistributionPoints([
        x509.DistributionPoint(None, x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, "x")]), None, None)]), False), _EKU,
        _SAN]),
    "2000 CDP URLs": lambda: make_cert([_cdp([f"http://h{i}.contoso.local/x.crl"
                                              for i in range(2000)]), _EKU, _SAN]),
    "odd AIA URLs": lambda: make_cert([_aia(ODD_URLS), _EKU, _SAN]),
    "name constraints": lambda: make_cert([
        (x509.NameConstraints([x509.DNSName("contoso.local")], None), True), _EKU, _SAN]),
    "a CA certificate": lambda: make_cert([(x509.BasicConstraints(True, 0), True), _EKU, _SAN]),
    "long policy text": lambda: make_cert([(x509.CertificatePolicies([x509.PolicyInformation(
        x509.ObjectIdentifier("2.5.29.32.0"), ["http://cps", x509.UserNotice(None, "x" * 200)])
    ]), False), _EKU, _SAN]),
    "no extensions": lambda: make_cert([]),
    "a control character in the CN": lambda: make_cert(
        [_EKU], subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                      "mp01.\u00e9x\x00\nample.local")])),
    "odd name components": lambda: make_cert([_EKU, _SAN], subject=x509.Name([
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "a,b"),
        x509.NameAttribute(NameOID.COMMON_NAME, '=,+;<>#"')])),
}


MALFORMED = {"an empty EKU extension"}
"""Encodings that break the X.509 ASN.1 (EKU is SEQUENCE SIZE (1..MAX)): unreadable, exit 2."""
OVER_LIMITS = {"10000 SAN names": "IBCM_LAB_LIMIT_SAN_ENTRIES",
               "2000 CDP URLs": "IBCM_LAB_LIMIT_URLS_PER_EXTENSION"}
"""Over a cap of lab.limits (docs/limits.md): refused with exit 2 naming the cap."""


@pytest.mark.parametrize("odd", sorted(ODD_CERTS))
def test_certificates_with_odd_extensions_are_linted(odd: str) -> None:
    data = ODD_CERTS[odd]().public_bytes(serialization.Encoding.PEM)
    with peak_memory() as peak:
        code, out, err = check_cert(data, "--format", "json", suffix=".pem")
    if odd in MALFORMED:
        assert (code, out) == (2, "")
        assert "cannot be parsed" in one_error_line(err)
    elif odd in OVER_LIMITS:
        assert (code, out) == (2, "")
        assert f"{OVER_LIMITS[odd]}=N" in one_error_line(err)
    else:
        assert code in (0, 1), err
        assert not err and out.startswith("{")
    assert peak[0] < 64 * 1024 * 1024


@pytest.mark.parametrize("odd", ["unknown critical extension", "odd CDP URLs",
                                 "odd name components"])
def test_certificates_with_odd_extensions_are_replayed(certs_dir: Path, tmp_path: Path,
                                                       odd: str) -> None:
    path = tmp_path / "odd.pem"
    path.write_bytes(ODD_CERTS[odd]().public_bytes(serialization.Encoding.PEM))
    with time_limit(HANG, "check-cert with the replay"):
        code, out, err = cli("check-cert", path, "--certs", certs_dir)
    assert_cli_contract(code, out, err)


# ------------------------------------------------------------------------------------------
# Known bugs: the correct behaviour, xfail until fixed
# ------------------------------------------------------------------------------------------

BASE = (SCENARIOS / "seed3-smsmp-with-https.toml").read_text(encoding="utf-8")
SAN_LINE = 'san = ["IBCM-Intra.contoso.local", "IBCM-Internet.public.com"]'


def variant(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def run_text(text: str, certs: Path, folder: Path) -> tuple[int, str, str]:
    path = folder / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    with time_limit(HANG, "ibcm-lab run"):
        return cli("run", path, "--certs", certs)


@pytest.mark.parametrize(("old", "new", "key"), [
    (SAN_LINE, f'not_after = "+99999999999d"\n{SAN_LINE}', "not_after"),
    (SAN_LINE, f'not_after = "+{"9" * 400}.5d"\n{SAN_LINE}', "not_after"),
    (SAN_LINE, f'not_before = "-800000d"\n{SAN_LINE}', "not_before"),
    ('name = "PC01"', 'name = "PC01"\nclock_skew = "+3000000d"', "clock_skew"),
    ('domain = "contoso.local"', 'domain = "contoso.local"\ncrl_next_update = "+3000000d"',
     "crl_next_update"),
])
def test_time_offset_out_of_range_is_refused(certs_dir: Path, tmp_path: Path, old: str,
                                             new: str, key: str) -> None:
    code, _, err = run_text(variant(old, new), certs_dir, tmp_path)
    assert code == 2, err
    assert key in one_error_line(err)


@pytest.mark.parametrize("line", [
    "ccmsetup.exe /retry:" + "1" * 5000,
    "ccmsetup.exe /downloadtimeout:" + "1" * 5000,
    "ccmsetup.exe CCMHTTPSPORT=" + "4" * 5000,
])
def test_numbers_over_4300_digits_in_ccmsetup_are_syntax_errors(line: str) -> None:
    with pytest.raises(CcmsetupSyntaxError):
        parse_ccmsetup(line)
    report = lint_ccmsetup(line, site_code="P01")
    assert report.errors
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(variant("/NoCRLCheck", line.removeprefix("ccmsetup.exe ")),
                           file="hostile.toml")
    assert "ccmsetup" in str(e.value)


def test_numbers_over_4300_digits_in_toml_are_scenario_errors() -> None:
    with pytest.raises(ScenarioError):
        load_scenario_text("x = 1" + "0" * 5000 + "\n" + BASE, file="hostile.toml")


@pytest.mark.parametrize("value", ["[" * 2000 + "]" * 2000, "{a=" * 2000 + "1" + "}" * 2000,
                                   "[" * 100_000])
def test_deeply_nested_toml_is_a_scenario_error(value: str) -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(f"x = {value}\n", file="hostile.toml")
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize(("old", "new", "key"), [
    ('domain = "contoso.local"', 'domain = "contoso.local"\ncdp = ["ldap", "http://[::1/x"]',
     "cdp"),
    ('domain = "contoso.local"', 'domain = "contoso.local"\naia = ["http://a:99999/x.crt"]',
     "aia"),
    (SAN_LINE, f'cdp = ["http://h.contoso.local/\u00e9.crl"]\n{SAN_LINE}', "cdp"),
])
def test_url_the_lab_cannot_use_is_refused_or_run(certs_dir: Path, tmp_path: Path, old: str,
                                                  new: str, key: str) -> None:
    code, out, err = run_text(variant(old, new), certs_dir, tmp_path)
    assert_cli_contract(code, out, err, names=key)


@pytest.mark.parametrize("subject", ["x" * 65, "\u00e9" * 40])
def test_subject_the_lab_cannot_issue(certs_dir: Path, tmp_path: Path, subject: str) -> None:
    code, out, err = run_text(variant(SAN_LINE, f'subject = "{subject}"\n{SAN_LINE}'),
                              certs_dir, tmp_path)
    assert_cli_contract(code, out, err, names="subject")


def test_key_with_a_line_break_keeps_the_error_on_one_line() -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text('"a\\nb" = 1\n' + BASE, file="hostile.toml")
    assert len(str(e.value).splitlines()) == 1, str(e.value)
    assert "\x1b" not in str(e.value)


def test_linter_is_fast_on_a_long_line_with_many_mistakes() -> None:
    line = "ccmsetup.exe " + "/source:x " * 1000 + " ".join(f"BAD{i}=1" for i in range(10))
    with time_limit(HANG, "lint_ccmsetup"):
        report = lint_ccmsetup(line, site_code="P01")
    assert report.errors


def test_pem_with_many_unterminated_blocks_is_refused_quickly() -> None:
    with time_limit(HANG, "check-cert on unterminated PEM blocks"):
        code, _, err = check_cert(b"-----BEGIN CERTIFICATE-----\n" * 8000, suffix=".pem")
    assert code == 2 and one_error_line(err)


def _der_tlv(data: bytes, at: int) -> tuple[int, int]:
    """(start of content, end) of the DER element at ``at``."""
    length, start = data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    return start, start + length


def _der_children(data: bytes, at: int) -> list[bytes]:
    start, end = _der_tlv(data, at)
    out = []
    while start < end:
        _, stop = _der_tlv(data, start)
        out.append(data[start:stop])
        start = stop
    return out


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def pfx_with_mac_iterations(count: int) -> bytes:
    """GOOD_PFX with its MAC iteration count replaced (the MAC no longer verifies)."""
    version, auth_safe, mac_data = _der_children(GOOD_PFX, 0)
    digest, salt, _ = _der_children(mac_data, 0)
    iterations = _der(0x02, count.to_bytes((count.bit_length() + 8) // 8, "big"))
    return _der(0x30, version + auth_safe + _der(0x30, digest + salt + iterations))


def test_pkcs12_with_a_modest_mac_iteration_count_is_a_wrong_password() -> None:
    """The twin of the next test: the patched file is read (and its MAC fails)."""
    code, _, err = check_cert(pfx_with_mac_iterations(4096), "--password",
                              PASSWORD.decode(), suffix=".pfx")
    assert code == 2 and "wrong password" in one_error_line(err)


def test_pkcs12_with_an_absurd_iteration_count_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "slow.pfx"
    path.write_bytes(pfx_with_mac_iterations(2**31 - 1))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lab", "check-cert", str(path), "--no-replay",
             "--password", PASSWORD.decode()],
            capture_output=True, text=True, timeout=HANG,
            env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail(f"check-cert still running after {HANG} s")
    assert done.returncode == 2
    assert "iteration" in one_error_line(done.stderr)
    # refused from the count it read, before any of them was run
    assert f"asks for {2**31 - 1} MAC iterations (more than " in done.stderr


def test_replay_of_a_certificate_with_a_broken_aia_url(certs_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "odd.pem"
    path.write_bytes(make_cert([_aia(["http://[::1/x.crl"]), _EKU, _SAN]).public_bytes(
        serialization.Encoding.PEM))
    with time_limit(HANG, "check-cert with the replay"):
        code, out, err = cli("check-cert", path, "--certs", certs_dir)
    assert code in (0, 1), err
    assert "Traceback" not in err and out
