"""Tests for the ``ibcm-lab`` command line: exit codes, error lines, text and JSON reports, demo.

Most tests call :func:`lab.cli.main` in-process (the scenarios still run over real loopback
TLS); one test runs the installed ``ibcm-lab`` console script and one runs ``python -m lab``.
Every rejected input has a passing twin: the same file with the defect repaired.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from labtest import SCENARIOS

from lab import __version__
from lab.cli import main

CRL_ON = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
CRL_OFF = SCENARIOS / "seed4-internet-client-crl-check-off.toml"
NO_HTTPS = SCENARIOS / "seed3-smsmp-without-https.toml"
WITH_HTTPS = SCENARIOS / "seed3-smsmp-with-https.toml"
ONE_NAME = SCENARIOS / "seed2-mp-cert-intranet-name-only.toml"

STEP_KEYS = {"action", "location", "target", "outcome", "expected", "met", "error", "winhttp",
             "http_status", "openssl", "revocation", "explanation", "fix"}
SUMMARY = re.compile(r"^(\d+)/(\d+) scenarios passed, (\d+)/(\d+) expectations met, in [0-9.]+ s$")


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run(capsys: pytest.CaptureFixture[str], certs: Path, *argv: str | Path
        ) -> tuple[int, str, str]:
    return cli(capsys, "run", *argv, "--certs", certs)


def summary(out: str) -> tuple[int, int, int, int]:
    match = SUMMARY.match(out.rstrip("\n").splitlines()[-1])
    assert match, out[-300:]
    passed, total, met, steps = (int(g) for g in match.groups())
    return passed, total, met, steps


def copy(src: Path, dest: Path, old: str | None = None, new: str = "") -> Path:
    """Copy a bundled scenario, replacing its only occurrence of ``old`` by ``new``."""
    text = src.read_text(encoding="utf-8")
    if old is not None:
        assert text.count(old) == 1, (old, text.count(old))
        text = text.replace(old, new)
    dest.write_text(text, encoding="utf-8")
    return dest


def line_of(path: Path, needle: str) -> int:
    hits = [i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def one_error_line(err: str) -> str:
    """The single stderr line, checked to be alone and free of a traceback."""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert err.startswith("ibcm-lab: error: ")
    return err.rstrip("\n")


# ------------------------------------------------------------------------------------------
# Exit codes and the text report
# ------------------------------------------------------------------------------------------


def test_passing_scenario_exits_0(capsys: pytest.CaptureFixture[str], certs_dir: Path) -> None:
    code, out, err = run(capsys, certs_dir, WITH_HTTPS)
    assert (code, err) == (0, "")
    assert out.startswith("== seed3-smsmp-with-https: ")
    assert "-> PASSED" in out.splitlines()[0]
    assert f"   file: {WITH_HTTPS}" in out
    assert "    PASS  1. install @ intranet  ok  (expected ok)" in out
    assert "    PASS  2. register @ intranet  ok  (expected ok)" in out
    assert "MISS" not in out
    assert summary(out) == (1, 1, 2, 2)


def test_unmet_expectation_exits_1_and_shows_miss(capsys: pytest.CaptureFixture[str],
                                                  certs_dir: Path, tmp_path: Path) -> None:
    wrong = copy(NO_HTTPS, tmp_path / "wrong-expect.toml", 'expect = "403.4"', 'expect = "ok"')
    code, out, err = run(capsys, certs_dir, wrong)
    assert (code, err) == (1, "")
    assert "-> FAILED" in out.splitlines()[0]
    assert "    PASS  1. install @ intranet  ok  (expected ok)" in out
    miss = ("    MISS  2. register @ intranet  FAIL CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E "
            "HTTP 403.4  (expected ok)  [+00:00:08]")
    assert miss in out.splitlines()
    after = out[out.index(miss):]
    assert "        why  " in after and "        fix  Write SMSMP=https://" in after
    assert "StatusCode=403" in after
    assert summary(out) == (0, 1, 1, 2)

    code, out, err = run(capsys, certs_dir, wrong, "--format", "json")
    assert (code, err) == (1, "")
    doc = json.loads(out)
    assert doc["passed"] is False
    (step,) = [s for s in doc["clients"][0]["steps"] if s["number"] == "2"]
    assert (step["expected"], step["outcome"], step["met"], step["http_status"]) == (
        "ok", "fail", False, "403.4")


def test_unchanged_copy_twin_exits_0(capsys: pytest.CaptureFixture[str], certs_dir: Path,
                                     tmp_path: Path) -> None:
    same = copy(NO_HTTPS, tmp_path / "same-expect.toml")
    code, out, err = run(capsys, certs_dir, same)
    assert (code, err) == (0, "")
    assert "-> PASSED" in out.splitlines()[0]
    assert ("    PASS  2. register @ intranet  FAIL CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E "
            "HTTP 403.4  (expected 403.4)  [+00:00:08]") in out.splitlines()
    assert summary(out) == (1, 1, 2, 2)


# ------------------------------------------------------------------------------------------
# Unusable input: exit 2, one stderr line, nothing on stdout
# ------------------------------------------------------------------------------------------

BAD_INPUT = [
    # id, old, bad, good, key, line needle (in the bad file), message
    pytest.param("check_crl = false", "check_crl = fals", "check_crl = false", None,
                 "check_crl = fals", "TOML syntax error: Invalid value (column 13)",
                 id="syntax-error"),
    pytest.param("check_crl = false", "check_crll = false", "check_crl = false\nhttps_only = true",
                 "site.check_crll", "check_crll",
                 "unknown key 'check_crll' (did you mean 'check_crl'?)", id="unknown-key"),
    pytest.param("check_crl = false", 'check_crl = "false"', "check_crl = false",
                 "site.check_crl", "check_crl", "expected true or false, got a string 'false'",
                 id="wrong-type"),
    pytest.param('issuer = "Contoso-CA"', 'issuer = "Contoso CA"', 'issuer = "Contoso-CA"',
                 "mp.cert.issuer", "issuer =",
                 "There is no CA named 'Contoso CA' (defined: 'Contoso-CA')", id="dangling-ca"),
    pytest.param('domain = "contoso.local"\n', "", 'domain = "contoso.local"\n',
                 "ca[0].domain", "[[ca]]",
                 'an enterprise CA needs its AD domain (domain = "contoso.local")',
                 id="enterprise-ca-without-domain"),
    pytest.param("SMSSITECODE=P01", "SMSSITECODE=P0", "SMSSITECODE=P01",
                 "client[0].ccmsetup", "ccmsetup =",
                 "'SMSSITECODE=P0': expected a 3-character site code (letters and digits) or "
                 "AUTO, got 'P0'", id="malformed-ccmsetup"),
]


@pytest.mark.parametrize(("old", "bad", "good", "key", "at", "message"), BAD_INPUT)
def test_bad_input_exits_2_with_one_error_line(
        capsys: pytest.CaptureFixture[str], certs_dir: Path, tmp_path: Path,
        old: str, bad: str, good: str, key: str | None, at: str, message: str) -> None:
    path = copy(WITH_HTTPS, tmp_path / "bad.toml", old, bad)
    code, out, err = run(capsys, certs_dir, path)
    assert (code, out) == (2, "")
    where = f"{path}:{line_of(path, at)}"
    expected = f"{where}: {key}: {message}" if key else f"{where}: {message}"
    assert one_error_line(err) == f"ibcm-lab: error: {expected}"


@pytest.mark.parametrize(("old", "bad", "good", "key", "at", "message"), BAD_INPUT)
def test_bad_input_twin_runs_and_passes(
        capsys: pytest.CaptureFixture[str], certs_dir: Path, tmp_path: Path,
        old: str, bad: str, good: str, key: str | None, at: str, message: str) -> None:
    path = copy(WITH_HTTPS, tmp_path / "good.toml", old, good)
    code, out, err = run(capsys, certs_dir, path)
    assert (code, err) == (0, "")
    assert summary(out) == (1, 1, 2, 2)


def test_missing_path_exits_2(capsys: pytest.CaptureFixture[str], certs_dir: Path,
                              tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = run(capsys, certs_dir, missing)
    assert (code, out) == (2, "")
    assert one_error_line(err) == f"ibcm-lab: error: {missing}: no such file or folder"
    # twin: the same path once the file exists
    copy(WITH_HTTPS, missing)
    code, out, err = run(capsys, certs_dir, missing)
    assert (code, err) == (0, "")
    assert out.startswith("== nope: ")


def test_empty_folder_exits_2(capsys: pytest.CaptureFixture[str], certs_dir: Path,
                              tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no scenarios here", encoding="utf-8")
    code, out, err = run(capsys, certs_dir, tmp_path)
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        f"ibcm-lab: error: {tmp_path}: the folder holds no *.toml scenario files")


def test_folder_with_a_bad_file_runs_nothing(capsys: pytest.CaptureFixture[str],
                                             certs_dir: Path, tmp_path: Path) -> None:
    copy(WITH_HTTPS, tmp_path / "a-good.toml")
    bad = copy(NO_HTTPS, tmp_path / "b-bad.toml", 'location = "intranet"\nexpect = "403.4"',
               'location = "home"\nexpect = "403.4"')
    code, out, err = run(capsys, certs_dir, tmp_path)
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        f"ibcm-lab: error: {bad}:{line_of(bad, 'home')}: client[0].step[1].location: "
        "expected one of 'intranet', 'internet', 'vpn', 'dmz', got 'home'")


def test_folder_of_good_files_twin_runs_all(capsys: pytest.CaptureFixture[str],
                                            certs_dir: Path, tmp_path: Path) -> None:
    copy(WITH_HTTPS, tmp_path / "a-good.toml")
    copy(NO_HTTPS, tmp_path / "b-bad.toml")
    code, out, err = run(capsys, certs_dir, tmp_path)
    assert (code, err) == (0, "")
    heads = [line.split(":")[0] for line in out.splitlines() if line.startswith("== ")]
    assert heads == ["== a-good", "== b-bad"]
    assert summary(out) == (2, 2, 4, 4)


def test_bad_format_value_is_refused_by_argparse(capsys: pytest.CaptureFixture[str],
                                                 certs_dir: Path) -> None:
    with pytest.raises(SystemExit) as info:
        run(capsys, certs_dir, WITH_HTTPS, "--format", "xml")
    out, err = capsys.readouterr()
    assert (info.value.code, out) == (2, "")
    assert "argument --format: invalid choice: 'xml'" in err
    # twin: a valid choice
    code, out, err = run(capsys, certs_dir, WITH_HTTPS, "--format", "text")
    assert (code, err) == (0, "")


# ------------------------------------------------------------------------------------------
# JSON report
# ------------------------------------------------------------------------------------------


def _main_json(argv: list[str]) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, json.loads(out.getvalue()), err.getvalue()


@pytest.fixture(scope="module")
def crl_on_json(certs_dir: Path) -> dict[str, Any]:
    code, doc, err = _main_json(["run", str(CRL_ON), "--format", "json",
                                 "--certs", str(certs_dir)])
    assert (code, err) == (0, "")
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def folder_json(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    folder = tmp_path_factory.mktemp("json-folder")
    for src in (CRL_OFF, NO_HTTPS, ONE_NAME):
        copy(src, folder / src.name)
    code, doc, err = _main_json(["run", str(folder), "--format", "json",
                                 "--certs", str(certs_dir)])
    assert (code, err) == (0, "")
    assert isinstance(doc, list)
    return doc


def _check_contract(doc: dict[str, Any]) -> None:
    assert {"scenario", "file", "passed", "clients"} <= doc.keys()
    assert isinstance(doc["passed"], bool)
    assert doc["clients"], doc["scenario"]
    for client in doc["clients"]:
        assert isinstance(client["name"], str) and client["steps"]
        for step in client["steps"]:
            assert step.keys() >= STEP_KEYS, STEP_KEYS - step.keys()
            assert step["outcome"] in ("ok", "fail")
            assert isinstance(step["met"], bool)
            if step["error"] is not None:
                assert {"name", "code", "message"} <= step["error"].keys()
            assert {"error", "flags"} <= step["winhttp"].keys()
            assert isinstance(step["winhttp"]["flags"], list)
            if step["openssl"] is not None:
                assert {"verify_code", "verify_message"} <= step["openssl"].keys()
                assert isinstance(step["openssl"]["verify_code"], int)
            rev = step["revocation"]
            assert isinstance(rev["checked"], bool) and isinstance(rev["urls"], list)
            for url in rev["urls"]:
                assert {"url", "result", "error", "simulated_ms"} <= url.keys()
            assert isinstance(step["explanation"], str) and isinstance(step["fix"], str)


def last_step(doc: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = doc["clients"][-1]["steps"][-1]
    return step


def test_json_single_scenario_is_one_object(crl_on_json: dict[str, Any]) -> None:
    _check_contract(crl_on_json)
    assert crl_on_json["scenario"] == "seed4-internet-client-ldap-cdp-crl-on"
    assert crl_on_json["file"] == str(CRL_ON)
    assert crl_on_json["passed"] is True
    assert [c["name"] for c in crl_on_json["clients"]] == ["PC01"]
    steps = crl_on_json["clients"][0]["steps"]
    assert [(s["number"], s["automatic"], s["action"], s["location"], s["outcome"], s["met"])
            for s in steps] == [
        ("1", False, "install", "intranet", "ok", True),
        ("1a", True, "register", "intranet", "ok", True),
        ("1b", True, "location", "intranet", "ok", True),
        ("2", False, "inventory", "internet", "fail", True)]
    assert all(s["error"] is None for s in steps[:-1])


def test_json_crl_on_last_step_is_revocation_offline(crl_on_json: dict[str, Any]) -> None:
    step = last_step(crl_on_json)
    assert step["target"] == "https://IBCM-Internet.public.com/ccm_system/request"
    assert step["expected"] == "CRYPT_E_REVOCATION_OFFLINE"
    assert (step["error"]["name"], step["error"]["code"]) == (
        "CRYPT_E_REVOCATION_OFFLINE", "0x80092013")
    assert step["error"]["message"].startswith("The revocation function was unable to check "
                                               "revocation because the revocation server was "
                                               "offline.")
    assert step["winhttp"]["flags"] == ["CERT_REV_FAILED"]
    assert step["winhttp"]["error"]["name"] == "ERROR_WINHTTP_SECURE_FAILURE"
    assert step["http_status"] is None
    assert step["openssl"]["verify_code"] == 3
    assert step["openssl"]["verify_message"] == "unable to get certificate CRL"
    rev = step["revocation"]
    assert rev["checked"] is True
    urls = rev["urls"]
    assert len(urls) == 2
    assert urls[0]["url"].startswith("ldap:///CN=Contoso-CA,CN=ca01,CN=CDP,")
    assert urls[1]["url"] == "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"
    assert [(u["result"], u["simulated_ms"]) for u in urls] == [("failed", 15000)] * 2
    assert [u["error"]["name"] for u in urls] == [
        "ERROR_DS_SERVER_DOWN", "ERROR_WINHTTP_NAME_NOT_RESOLVED"]
    assert "CRYPT_E_REVOCATION_OFFLINE (0x80092013)" in step["explanation"]
    assert "Clients check the certificate revocation list (CRL) for site systems" in step["fix"]


def test_json_folder_is_an_array_in_file_order(folder_json: list[Any]) -> None:
    assert [d["scenario"] for d in folder_json] == [
        "seed2-mp-cert-intranet-name-only", "seed3-smsmp-without-https",
        "seed4-internet-client-crl-check-off"]
    for doc in folder_json:
        _check_contract(doc)
        assert doc["passed"] is True
        assert doc["file"].endswith(doc["scenario"] + ".toml")


def test_json_shape_follows_the_command_line(certs_dir: Path, tmp_path: Path) -> None:
    # a folder holding one file is still a folder: an array of one object...
    copy(CRL_OFF, tmp_path / CRL_OFF.name)
    code, doc, _ = _main_json(["run", str(tmp_path), "--format", "json",
                               "--certs", str(certs_dir)])
    assert code == 0 and isinstance(doc, list) and len(doc) == 1
    # ...and the same file named directly is one object (the twin)
    code, doc, _ = _main_json(["run", str(tmp_path / CRL_OFF.name), "--format", "json",
                               "--certs", str(certs_dir)])
    assert code == 0 and isinstance(doc, dict)
    assert doc["scenario"] == "seed4-internet-client-crl-check-off"


def test_json_crl_check_off_twin_passes_without_checking(folder_json: list[Any]) -> None:
    doc = {d["scenario"]: d for d in folder_json}["seed4-internet-client-crl-check-off"]
    step = last_step(doc)
    assert (step["action"], step["location"], step["outcome"], step["met"]) == (
        "inventory", "internet", "ok", True)
    assert step["target"] == "https://IBCM-Internet.public.com/ccm_system/request"
    assert step["revocation"]["checked"] is False
    assert step["revocation"]["urls"] == []
    assert step["error"] is None
    assert step["winhttp"]["flags"] == []


def test_json_smsmp_without_https_register_is_403_4(folder_json: list[Any]) -> None:
    doc = {d["scenario"]: d for d in folder_json}["seed3-smsmp-without-https"]
    (register,) = [s for s in doc["clients"][0]["steps"] if s["number"] == "2"]
    assert (register["action"], register["expected"], register["met"]) == (
        "register", "403.4", True)
    assert register["http_status"] == "403.4"
    assert register["target"] == "http://IBCM-Intra.contoso.local/ccm_system/request"
    assert (register["error"]["name"], register["error"]["code"]) == (
        "CCM_E_BAD_HTTP_STATUS_CODE", "0x87D0027E")
    install = doc["clients"][0]["steps"][0]
    assert install["http_status"] != "403.4" and install["error"] is None


def test_json_intranet_name_only_fails_name_check(folder_json: list[Any]) -> None:
    doc = {d["scenario"]: d for d in folder_json}["seed2-mp-cert-intranet-name-only"]
    step = last_step(doc)
    assert (step["action"], step["location"], step["outcome"]) == ("policy", "internet", "fail")
    assert (step["error"]["name"], step["error"]["code"]) == ("CERT_E_CN_NO_MATCH", "0x800B010F")
    assert step["winhttp"]["flags"] == ["CERT_CN_INVALID"]
    assert step["openssl"]["verify_code"] == 62
    # twin: the same client's intranet policy request passed the name check
    intranet = doc["clients"][0]["steps"][-2]
    assert (intranet["location"], intranet["outcome"], intranet["error"]) == (
        "intranet", "ok", None)


# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_output(certs_dir: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["demo", "--certs", str(certs_dir)])
    return code, out.getvalue(), err.getvalue()


def test_demo_walks_through_every_scene(demo_output: tuple[int, str, str]) -> None:
    code, out, err = demo_output
    assert (code, err) == (0, "")
    scenes = re.findall(r"^Scene (\d+) of 9 - ", out, flags=re.MULTILINE)
    assert scenes == [str(n) for n in range(1, 10)]
    assert "Scene 7 of 9 - seed §4: The CRL box and an internet client" in out
    assert "Text=ERROR_WINHTTP_SECURE_FAILURE" in out
    assert out.count("  Verdict: every expectation met in both scenarios.") == 9
    assert "NOT met" not in out
    assert out.rstrip().splitlines()[-1].startswith("15/15 scenarios behaved as the seed says")


def test_demo_single_scene(capsys: pytest.CaptureFixture[str], certs_dir: Path) -> None:
    code, out, err = cli(capsys, "demo", "--scene", "3", "--certs", certs_dir)
    assert (code, err) == (0, "")
    assert re.findall(r"^Scene (\d+) of 9", out, flags=re.MULTILINE) == ["3"]
    assert "Scene 3 of 9 - seed §3: SMSMP needs https:// for an HTTPS-only MP" in out
    assert "Passing twin (seed3-smsmp-with-https): SMSMP=https://IBCM-Intra.contoso.local." in out
    assert out.rstrip().splitlines()[-1].startswith("2/2 scenarios behaved as the seed says")


@pytest.mark.parametrize("scene", ["99", "0"])
def test_demo_scene_out_of_range_exits_2(capsys: pytest.CaptureFixture[str], certs_dir: Path,
                                         scene: str) -> None:
    code, out, err = cli(capsys, "demo", "--scene", scene, "--certs", certs_dir)
    assert (code, out) == (2, "")
    assert one_error_line(err) == (
        f"ibcm-lab: error: --scene expects a number from 1 to 9, got {scene}")


# ------------------------------------------------------------------------------------------
# Usage
# ------------------------------------------------------------------------------------------


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys)
    assert code == 2
    assert out.startswith("usage: ibcm-lab ")
    assert re.search(r"^\s+run\s+run scenario files", out, flags=re.MULTILINE)
    assert re.search(r"^\s+demo\s+walk through the seed document", out, flags=re.MULTILINE)
    assert "Traceback" not in out + err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    out, err = capsys.readouterr()
    assert (info.value.code, err) == (0, "")
    assert out == f"ibcm-lab {__version__}\n"
    assert __version__ == "0.1.0"


# ------------------------------------------------------------------------------------------
# Real processes: the console script and python -m lab
# ------------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("IBCM_LAB_DEBUG", "IBCM_LAB_CERTS")}


def test_console_script_reports_bad_input_without_traceback(certs_dir: Path,
                                                            tmp_path: Path) -> None:
    exe = shutil.which("ibcm-lab", path=str(Path(sys.executable).parent))
    assert exe is not None, "the ibcm-lab console script is not installed next to python"
    bad = copy(WITH_HTTPS, tmp_path / "bad.toml", "check_crl = false", "check_crl = fals")
    proc = subprocess.run([exe, "run", str(bad), "--certs", str(certs_dir)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=_env(), check=False)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert one_error_line(proc.stderr) == (
        f"ibcm-lab: error: {bad}:{line_of(bad, 'check_crl = fals')}: TOML syntax error: "
        "Invalid value (column 13)")


def test_python_dash_m_lab_runs_a_scenario(certs_dir: Path, tmp_path: Path) -> None:
    good = copy(WITH_HTTPS, tmp_path / "good.toml")
    proc = subprocess.run([sys.executable, "-m", "lab", "run", str(good), "--certs",
                           str(certs_dir)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=_env(), check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("== good: ")
    assert summary(proc.stdout) == (1, 1, 2, 2)
    assert not (tmp_path / "certs").exists(), "--certs was ignored"
