"""Tests for the written logs: CMTrace client and MP logs, the MP's IIS W3C log, the writer
behind ``ibcm-lab run --out DIR`` and the log references in the text report.

One module-scoped real run of every bundled scenario (plus a copy of the seed §4 scenario in
Asia/Tokyo) is written once and checked file by file; the format functions are also checked
on fixed inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cli import main
from lab.clock import zone_info
from lab.errors import UsageError
from lab.logs.cmtrace import (
    CMTRACE_LINE,
    entry_utc,
    format_line,
    format_log,
    parse_line,
    parse_log,
)
from lab.logs.w3c import FIELDS, format_w3c, parse_w3c
from lab.logs.writer import LDAP_LOG, MANIFEST, MP_SERVER_IP, machine_name, write_logs
from lab.results.logline import LogLine
from lab.results.records import MpRecord
from lab.results.runs import ClientResult, RunResult, ScenarioResult
from lab.run import run_loaded
from lab.scenario.loader import load_all

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
CRL_ON = "seed4-internet-client-ldap-cdp-crl-on"
CRL_OFF = "seed4-internet-client-crl-check-off"
NO_HTTPS = "seed3-smsmp-without-https"
ONE_NAME = "seed2-mp-cert-intranet-name-only"
TOKYO = "seed4-crl-on-tokyo"
MP = "IBCM-Intra"

UTC = dt.UTC
JST = zone_info("Asia/Tokyo")


@dataclass
class Written:
    run: RunResult
    out: Path
    paths: list[Path]

    def result(self, name: str) -> ScenarioResult:
        return next(r for r in self.run.scenarios if r.scenario.name == name)

    def folder(self, scenario: str, machine: str) -> Path:
        return self.out / scenario / machine


@pytest.fixture(scope="module")
def written(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Written:
    src = tmp_path_factory.mktemp("tokyo")
    text = (SCENARIOS / f"{CRL_ON}.toml").read_text(encoding="utf-8")
    assert text.count("[scenario]\n") == 1
    tokyo = src / f"{TOKYO}.toml"
    tokyo.write_text(text.replace("[scenario]\n", '[scenario]\ntimezone = "Asia/Tokyo"\n'),
                     encoding="utf-8")
    run = asyncio.run(run_loaded(load_all([SCENARIOS, tokyo]), certs=certs_dir))
    out = tmp_path_factory.mktemp("out")
    return Written(run, out, write_logs(run, out))


def read(path: Path) -> str:
    """A file's text with its line endings as written (``read_text`` would turn CRLF into LF)."""
    return path.read_bytes().decode("utf-8")


def entries(path: Path) -> list[dict[str, str]]:
    return parse_log(read(path))


def messages(path: Path) -> list[str]:
    return [e["message"] for e in entries(path)]


def by_file(steps: list[LogLine]) -> dict[str, list[LogLine]]:
    files: dict[str, list[LogLine]] = {}
    for line in steps:
        files.setdefault(line.file, []).append(line)
    return files


def client_lines(client: ClientResult) -> list[LogLine]:
    return [line for step in client.steps for line in step.log]


def fresh(result: ScenarioResult) -> RunResult:
    """A copy of one scenario's result with empty log references (the module fixture's
    steps keep theirs)."""
    clients = [ClientResult(c.name, [dataclasses.replace(s, log_refs=[]) for s in c.steps])
               for c in result.clients]
    return RunResult([ScenarioResult(result.scenario, result.pki, clients,
                                     mp_records=result.mp_records, mp_log=result.mp_log)])


# ------------------------------------------------------------------------------------------
# The format on fixed inputs
# ------------------------------------------------------------------------------------------

WHEN = dt.datetime(2026, 1, 5, 23, 59, 59, 123456, tzinfo=UTC)


def line(text: str = "Hello", severity: int = 1, when: dt.datetime = WHEN,
         source: str = "") -> LogLine:
    return LogLine("CcmMessaging.log", "CcmMessaging", text, severity, when, 1402, source)


@pytest.mark.parametrize(("zone", "when", "clock", "date"), [
    ("UTC", WHEN, "23:59:59.123+000", "01-05-2026"),
    ("Asia/Tokyo", WHEN, "08:59:59.123-540", "01-06-2026"),
    ("America/Los_Angeles", WHEN, "15:59:59.123+480", "01-05-2026"),
    ("America/Los_Angeles", WHEN.replace(month=7), "16:59:59.123+420", "07-05-2026"),
    ("Europe/Berlin", WHEN.replace(month=7), "01:59:59.123-120", "07-06-2026"),
    ("Europe/Berlin", WHEN, "00:59:59.123-060", "01-06-2026"),
    ("Asia/Kolkata", WHEN, "05:29:59.123-330", "01-06-2026"),
])
def test_format_line_time_date_and_windows_bias(zone: str, when: dt.datetime, clock: str,
                                                date: str) -> None:
    text = format_line(line(when=when), zone_info(zone))
    assert text == (f'<![LOG[Hello]LOG]!><time="{clock}" date="{date}" component="CcmMessaging" '
                    'context="" type="1" thread="1402" file="">')
    parsed = parse_line(text)
    assert parsed["time"] + parsed["bias"] == clock
    assert entry_utc(parsed) == when.replace(microsecond=123000)


def test_format_line_type_and_source_and_no_time_zone_twin() -> None:
    text = format_line(line("boom", 3, source="ccmsetup.cpp:10632"), UTC)
    parsed = parse_line(text)
    assert (parsed["type"], parsed["file"], parsed["context"]) == ("3", "ccmsetup.cpp:10632", "")
    assert parse_line(format_line(line("warn", 2), UTC))["type"] == "2"
    with pytest.raises(ValueError, match="type"):
        format_line(line(severity=4), UTC)
    with pytest.raises(ValueError, match="without a time"):
        format_line(dataclasses.replace(line(), time=None), UTC)
    with pytest.raises(ValueError, match="not a CMTrace line"):
        parse_line(text.replace('type="3"', 'type="4"'))


def test_multi_line_message_and_crlf_file() -> None:
    lines = [line("first"), line("two\nlines", 3), line("last\r\nof\rthree")]
    text = format_log(lines, UTC)
    assert "\n" not in text.replace("\r\n", "")
    assert text.endswith("\r\n") and text.count("<![LOG[") == 3
    parsed = parse_log(text)
    assert [e["message"] for e in parsed] == ["first", "two\r\nlines", "last\r\nof\r\nthree"]
    assert [e["line"] for e in parsed] == ["1", "2", "4"]
    physical = text.split("\r\n")
    assert physical[1].startswith("<![LOG[two") and physical[3].startswith("<![LOG[last")
    for e in parsed:
        assert CMTRACE_LINE.fullmatch(format_line(line(e["message"]), UTC))
    with pytest.raises(ValueError, match="CRLF"):
        parse_log(text.replace("\r\n", "\n"))
    with pytest.raises(ValueError, match="line 2"):
        parse_log(text.replace('type="3"', 'type="x"'))


def test_missing_times_take_the_previous_line_time() -> None:
    lines = [dataclasses.replace(line("a"), time=None), line("b"),
             dataclasses.replace(line("c"), time=None)]
    assert {e["time"] for e in parse_log(format_log(lines, UTC))} == {"23:59:59.123"}


def record(when: dt.datetime, **kw: object) -> MpRecord:
    values: dict[str, object] = dict(
        time=when, step="s1", method="GET", uri_stem="/SMS_MP/.sms_aut", uri_query="MPLIST",
        port=443, client_ip="127.0.0.1", user_agent="SMS CCM 5.0", host="mp", status=200,
        substatus=0, win32_status=0, detail="served")
    values.update(kw)
    return MpRecord(**values)  # type: ignore[arg-type]


def test_w3c_fields_days_and_values() -> None:
    late = dt.datetime(2026, 3, 1, 23, 59, 58, 900000, tzinfo=JST)  # 14:59:58 UTC
    next_day = dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    files = format_w3c([
        record(late),
        record(late, method="CCM_POST", uri_stem="/ccm_system/request", uri_query="-",
               user_agent="ccmhttp", status=403, substatus=13, win32_status=0x80092013),
        record(next_day, user_agent="", port=80, status=403, substatus=4),
        record(next_day, win32_status=-2146885613),
    ], server_ip=MP_SERVER_IP)
    assert list(files) == ["u_ex260301.log", "u_ex260302.log"]
    first = files["u_ex260301.log"]
    assert first.split("\r\n")[:4] == [
        "#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0",
        "#Date: 2026-03-01 14:59:58",
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
        "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"]
    assert first.endswith("\r\n") and "\n" not in first.replace("\r\n", "")
    rows = parse_w3c(first)
    assert rows[0] == dict(zip(FIELDS, (
        "2026-03-01", "14:59:58", "127.0.0.1", "GET", "/SMS_MP/.sms_aut", "MPLIST", "443", "-",
        "127.0.0.1", "SMS+CCM+5.0", "-", "200", "0", "0", "0"), strict=True))
    # no quoted IIS line gives sc-win32-status for 403.13: 0, and a remark says so
    assert (rows[1]["sc-status"], rows[1]["sc-substatus"], rows[1]["sc-win32-status"]) == (
        "403", "13", "0")
    assert first.split("\r\n")[4] == (
        "#Remark: Lab: sc-win32-status of the 403.13 lines is 0: no quoted IIS line gives its "
        "value; the lab's own check said 0x80092013 (CRYPT_E_REVOCATION_OFFLINE)")
    second = parse_w3c(files["u_ex260302.log"])
    assert "#Date: 2026-03-02 00:00:01\r\n" in files["u_ex260302.log"]
    assert (second[0]["cs(User-Agent)"], second[0]["s-port"], second[0]["sc-substatus"]) == (
        "-", "80", "4")
    assert second[1]["sc-win32-status"] == "0"  # 200 with a win32 status: none quoted
    assert "#Remark: Lab: sc-win32-status of the 200 lines is 0" in files["u_ex260302.log"]
    assert "#Remark: Lab: sc-win32-status of the 403.4 lines is 0: no quoted IIS line gives " \
        "its value\r\n" in files["u_ex260302.log"]
    untrusted = format_w3c([record(late, status=403, substatus=16, win32_status=0x800B0109)],
                           server_ip=MP_SERVER_IP)["u_ex260301.log"]
    assert parse_w3c(untrusted)[0]["sc-win32-status"] == "2148204809"  # reference §8.3
    assert "#Remark" not in untrusted
    assert format_w3c([], server_ip=MP_SERVER_IP) == {}
    with pytest.raises(ValueError, match="values for"):
        parse_w3c(first + "2026-03-01 15:00:00 too few\r\n")
    with pytest.raises(ValueError, match="before the #Fields"):
        parse_w3c("2026-03-01 15:00:00 x\r\n")


# ------------------------------------------------------------------------------------------
# Every bundled scenario, written
# ------------------------------------------------------------------------------------------


def test_every_written_file_parses(written: Written) -> None:
    on_disk = sorted(p for p in written.out.rglob("*") if p.is_file())
    assert not [p for p in on_disk if p.name.endswith(".tmp")]
    logs = [p for p in on_disk if p.name != MANIFEST]
    assert sorted(written.paths) == logs
    assert len({r.scenario.name for r in written.run.scenarios}) == len(
        list(SCENARIOS.glob("*.toml"))) + 1
    w3c = cmtrace = ldap = 0
    for path in logs:
        text = read(path)
        assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", ""), path
        if re.fullmatch(r"u_ex\d{6}\.log", path.name):
            rows = parse_w3c(text)
            assert rows and all(len(r) == len(FIELDS) for r in rows), path
            w3c += 1
        elif path.name == LDAP_LOG:
            # the DC's LDAP log (the lab's format): a header, then one line per operation
            first, *rest = text.split("\r\n")[:-1]
            assert first.startswith("# Lab: ") and rest, path
            assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z conn=\d+ ", line)
                       for line in rest), path
            ldap += 1
        else:
            found = parse_log(text)
            assert found, path
            for entry in found:
                assert CMTRACE_LINE.fullmatch(
                    text.split("\r\n")[int(entry["line"]) - 1]), (path, entry)
            cmtrace += 1
    assert w3c >= 14 and cmtrace >= 20 and ldap >= 5


def test_files_follow_the_machines_and_their_lines(written: Written) -> None:
    """Each client's files hold exactly its steps' lines in order, type 3 exactly on the
    error lines; the MP folder is named after the first label of its intranet FQDN."""
    for result in written.run.scenarios:
        name = result.scenario.name
        assert machine_name(result.scenario.mp.intranet_fqdn) == MP
        for client in result.clients:
            folder = written.folder(name, client.name)
            expected = by_file(client_lines(client))
            present = {p.name for p in folder.glob("*.log")} if folder.exists() else set()
            assert present == set(expected), (name, client.name)
            for file, lines in expected.items():
                got = entries(folder / file)
                assert [e["message"] for e in got] == [ln.text for ln in lines]
                assert [e["type"] for e in got] == [str(ln.severity) for ln in lines]
                assert [e["component"] for e in got] == [ln.component for ln in lines]
                assert [e["thread"] for e in got] == [str(ln.thread) for ln in lines]
                errors = [e["message"] for e in got if e["type"] == "3"]
                assert errors == [ln.text for ln in lines if ln.severity == 3]
        mp = written.folder(name, MP)
        reg = mp / "MP_RegistrationManager.log"
        assert reg.exists() == bool(result.mp_log)
        if result.mp_log:
            assert messages(reg) == [ln.text for ln in result.mp_log]
        assert bool(list(mp.glob("u_ex*.log"))) == bool(result.mp_records)


def test_bias_utc_and_tokyo(written: Written) -> None:
    for scenario, bias, hours in ((CRL_ON, "+000", 0), (TOKYO, "-540", 9)):
        result = written.result(scenario)
        files = by_file(client_lines(result.clients[0]))
        # Line by line, in order (a registration's lines come twice: ccmexec's automatic
        # registration after the install, then the register step).
        pairs = []
        for folder, file, lines in (
                ("PC01", "CcmMessaging.log", files["CcmMessaging.log"]),
                ("PC01", "ClientIDManagerStartup.log", files["ClientIDManagerStartup.log"]),
                (MP, "MP_RegistrationManager.log", list(result.mp_log))):
            found = entries(written.folder(scenario, folder) / file)
            assert [e["message"] for e in found] == [ln.text for ln in lines]
            pairs += zip(found, lines, strict=True)
        assert {e["bias"] for e, _ in pairs} == {bias}
        for e, ln in pairs:
            utc = ln.time
            assert utc is not None
            local = utc + dt.timedelta(hours=hours)
            assert e["time"] == f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}"
            assert e["date"] == f"{local:%m-%d-%Y}"
            assert entry_utc(e) == utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    # The IIS log stays in UTC whatever the machines' time zone.
    tokyo = parse_w3c(read(next(written.folder(TOKYO, MP).glob("u_ex*.log"))))
    first = written.result(TOKYO).mp_records[0].time.astimezone(UTC)
    assert (tokyo[0]["date"], tokyo[0]["time"]) == (f"{first:%Y-%m-%d}", f"{first:%H:%M:%S}")


def test_ccmmessaging_block_of_the_crl_scenario(written: Written) -> None:
    got = messages(written.folder(CRL_ON, "PC01") / "CcmMessaging.log")
    block = [
        "[CCMHTTP] ERROR: URL=https://IBCM-Internet.public.com/ccm_system/request, Port=443, "
        "Options=63, Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE",
        "[CCMHTTP]            : lpvStatusInformation is 0x1",
        "[CCMHTTP]            : WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED is set",
        "Post to https://IBCM-Internet.public.com/ccm_system/request failed with 0x87d00231.",
    ]
    positions = [got.index(text) for text in block]
    assert positions == sorted(positions)


def test_options_has_the_crl_bit_exactly_when_the_step_checked_the_crl(
        written: Written) -> None:
    seen: set[int] = set()
    for result in written.run.scenarios:
        for client in result.clients:
            for step in client.steps:
                for ln in step.log:
                    match = re.search(r"Options=(\d+)", ln.text)
                    if match is None:
                        continue
                    options = int(match.group(1))
                    seen.add(options)
                    assert bool(options & 0x20) == bool(step.crl_check), (
                        result.scenario.name, step.name, ln.text)
                    folder = written.folder(result.scenario.name, client.name)
                    assert ln.text in messages(folder / ln.file)
    assert {63, 31, 224, 192} <= seen
    on = messages(written.folder(CRL_ON, "PC01") / "CcmMessaging.log")
    assert any("Options=63," in m for m in on)
    # The passing twin (CRL box cleared) checks no CRL: Options=31 wherever it logs Options.
    off_step = written.result(CRL_OFF).clients[0].steps[-1]
    assert (off_step.crl_check, off_step.options, off_step.outcome) == (False, 31, "ok")
    off = written.folder(CRL_OFF, "PC01") / "CcmMessaging.log"
    for m in messages(off) if off.exists() else []:
        assert "Options=63" not in m
    one_name = messages(written.folder(ONE_NAME, "PC01") / "CcmMessaging.log")
    assert any("Options=31," in m for m in one_name)


def test_mp_w3c_log(written: Written) -> None:
    result = written.result(CRL_ON)
    day = result.mp_records[0].time.astimezone(UTC)
    path = written.folder(CRL_ON, MP) / f"u_ex{day:%y%m%d}.log"
    text = read(path)
    assert text.startswith("#Software: Microsoft Internet Information Services 10.0\r\n"
                           "#Version: 1.0\r\n"
                           f"#Date: {day:%Y-%m-%d %H:%M:%S}\r\n#Fields: date time s-ip ")
    rows = parse_w3c(text)
    assert len(rows) == len(result.mp_records)
    assert " CCM_POST /ccm_system/request - 443 " in text
    assert " GET /SMS_MP/.sms_aut MPLIST 443 " in text
    assert {r["cs(User-Agent)"] for r in rows} == {"ccmsetup", "ccmhttp", "SMS+CCM+5.0"}
    assert {r["s-ip"] for r in rows} == {MP_SERVER_IP}
    assert {(r["cs-method"], r["cs-uri-stem"], r["cs-uri-query"]) for r in rows} == {
        ("GET", "/SMS_MP/.sms_aut", "MPLIST"), ("CCM_POST", "/ccm_system/request", "-")}
    for row, rec in zip(rows, result.mp_records, strict=True):
        assert (row["sc-status"], row["sc-substatus"]) == (str(rec.status), str(rec.substatus))


def test_http_smsmp_gets_403_4_on_port_80_in_the_iis_log(written: Written) -> None:
    path = next(written.folder(NO_HTTPS, MP).glob("u_ex*.log"))
    rows = parse_w3c(read(path))
    refused = [r for r in rows if (r["sc-status"], r["sc-substatus"]) == ("403", "4")]
    # ccmexec's automatic registration and site refresh after the install, then step 2
    assert [(r["s-port"], r["cs-method"], r["cs(User-Agent)"]) for r in refused] == [
        ("80", "CCM_POST", "ccmhttp"), ("80", "GET", "SMS+CCM+5.0"),
        ("80", "CCM_POST", "ccmhttp")]
    assert " 80 - 127.0.0.1 ccmhttp - 403 4 " in read(path)


def test_mp_registration_log(written: Written) -> None:
    got = entries(written.folder(CRL_ON, MP) / "MP_RegistrationManager.log")
    assert "Processing Registration request from Client 'PC01.contoso.local'" in [
        e["message"] for e in got]
    assert {e["component"] for e in got} == {"MP_RegistrationManager"}


def test_failed_steps_point_at_their_first_error_line(written: Written) -> None:
    for result in written.run.scenarios:
        for client in result.clients:
            for step in client.steps:
                errors = [ln for ln in step.log if ln.severity == 3]
                if step.outcome != "fail" or not errors:
                    assert step.log_refs == [], (result.scenario.name, step.name)
                    continue
                files = list(dict.fromkeys(ln.file for ln in errors))
                assert len(step.log_refs) == len(files)
                for ref, file in zip(step.log_refs, files, strict=True):
                    path, number = ref.rsplit(":", 1)
                    assert Path(path) == written.folder(result.scenario.name, client.name) / file
                    physical = read(Path(path)).split("\r\n")
                    first = next(ln for ln in errors if ln.file == file)
                    assert parse_line(physical[int(number) - 1])["message"] == first.text
    step = written.result(CRL_ON).clients[0].steps[-1]
    log = written.folder(CRL_ON, "PC01") / "CcmMessaging.log"
    assert step.log_refs == [f"{log}:1"]


# ------------------------------------------------------------------------------------------
# Writing: replace, leave the rest alone, refuse an unwritable folder
# ------------------------------------------------------------------------------------------


def test_rewrite_replaces_own_files_and_leaves_others(written: Written, tmp_path: Path) -> None:
    result = written.result(CRL_ON)
    out = tmp_path / "new" / "deeper"
    first = write_logs(fresh(result), out)
    client = out / CRL_ON / "PC01"
    assert (client / MANIFEST).read_text() == (
        "ccmsetup.log\nCcmExec.log\nClientIDManagerStartup.log\nLocationServices.log\n"
        "CcmMessaging.log\n")
    mine = tmp_path / "new" / "notes.txt"
    mine.write_text("mine")
    theirs = client / "certutil-urlfetch.txt"
    theirs.write_text("another writer's file")
    user_log = client / "ccmsetup-from-the-real-pc.log"
    user_log.write_text("<![LOG[real]LOG]!>")
    stale = client / "ClientLocation.log"
    stale.write_text("from a previous run")
    (client / MANIFEST).write_text((client / MANIFEST).read_text() + "ClientLocation.log\n"
                                   "../../notes.txt\n")
    (client / "CcmMessaging.log").write_text("half")

    again = fresh(result)
    second = write_logs(again, out)
    assert second == first
    assert not stale.exists()
    assert mine.read_text() == "mine" and theirs.exists() and user_log.exists()
    assert first[4] == client / "CcmMessaging.log"
    assert (client / "CcmMessaging.log").read_bytes() == first[4].read_bytes()
    assert messages(client / "CcmMessaging.log")[0].startswith("[CCMHTTP] ERROR:")
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
    assert again.scenarios[0].clients[0].steps[-1].log_refs == [f"{client}/CcmMessaging.log:1"]


def test_same_scenario_twice_in_one_run_gets_two_folders(written: Written,
                                                         tmp_path: Path) -> None:
    one = fresh(written.result(NO_HTTPS)).scenarios[0]
    two = fresh(written.result(NO_HTTPS)).scenarios[0]
    write_logs(RunResult([one, two]), tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {NO_HTTPS, f"{NO_HTTPS}-2"}
    assert two.clients[0].steps[1].log_refs == [
        f"{tmp_path / f'{NO_HTTPS}-2' / 'PC01' / 'CcmMessaging.log'}:1"]


def test_unwritable_folder_is_a_usage_error(written: Written, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    run = fresh(written.result(CRL_ON))
    for out in (blocker, blocker / "out"):
        with pytest.raises(UsageError) as info:
            write_logs(run, out)
        message = str(info.value)
        assert "\n" not in message and str(out) in message
        assert f"{blocker} is a file, not a folder" in message
    assert run.scenarios[0].clients[0].steps[-1].log_refs == []


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------

needs_traces = pytest.mark.skipif(importlib.util.find_spec("lab.report.certutil") is None,
                                  reason="lab.report.certutil (write_traces) is not there yet")


@needs_traces
def test_cli_out_writes_logs_and_points_at_the_error_line(
        capsys: pytest.CaptureFixture[str], certs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "logs"
    code = main(["run", str(SCENARIOS / f"{CRL_ON}.toml"), "--certs", str(certs_dir),
                 "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert (code, stderr) == (0, "")
    log = out / CRL_ON / "PC01" / "CcmMessaging.log"
    assert log.exists() and (out / CRL_ON / MP / "MP_RegistrationManager.log").exists()
    assert list((out / CRL_ON / MP).glob("u_ex*.log"))
    refs = re.findall(r"^        open     (.+\.log):(\d+)$", stdout, re.MULTILINE)
    assert (str(log), refs[0][1]) in refs
    number = int(next(n for p, n in refs if p == str(log)))
    physical = read(log).split("\r\n")
    assert physical[number - 1].startswith(
        "<![LOG[[CCMHTTP] ERROR: URL=https://IBCM-Internet.public.com/ccm_system/request, ")


@needs_traces
def test_cli_unwritable_out_exits_2_with_one_line(capsys: pytest.CaptureFixture[str],
                                                  certs_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["run", str(SCENARIOS / f"{NO_HTTPS}.toml"), "--certs", str(certs_dir),
                 "--out", str(blocker / "out")])
    _, stderr = capsys.readouterr()
    assert code == 2
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith("ibcm-lab: error: ") and str(blocker) in stderr


# ------------------------------------------------------------------------------------------
# LocationServices.log: a site refresh and its failures (reference §6.2 A, D, E)
# ------------------------------------------------------------------------------------------

INTRA_FQDN = "IBCM-Intra.contoso.local"
INTERNET_FQDN = "IBCM-Internet.public.com"
LOCATION_LOG = "LocationServices.log"
REFERENCE = ROOT / "docs" / "reference.md"

# Copies of bundled scenarios whose step under test is a site refresh (action "location"):
# (copy's name, bundled scenario, the bundled step's text, the location step put in its place)
LOCATION_SCENARIOS = {
    "crl-on-location": (CRL_ON, 'action = "inventory"\nlocation = "internet"\n'
                        'expect = "CRYPT_E_REVOCATION_OFFLINE"'),
    "crl-off-location": (CRL_OFF, 'action = "inventory"\nlocation = "internet"\nexpect = "ok"'),
    "http-smsmp-location": (NO_HTTPS, 'action = "register"\nlocation = "intranet"\n'
                            'expect = "403.4"'),
    "https-smsmp-location": ("seed3-smsmp-with-https", 'action = "register"\n'
                             'location = "intranet"\nexpect = "ok"'),
}


@dataclass
class LocationRun:
    code: int
    stdout: str
    out: Path

    def lines(self, scenario: str) -> list[dict[str, str]]:
        return entries(self.out / scenario / "PC01" / LOCATION_LOG)


@pytest.fixture(scope="module")
def location_run(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LocationRun:
    """``ibcm-lab run FOLDER --out DIR`` on the copies of LOCATION_SCENARIOS."""
    src = tmp_path_factory.mktemp("location")
    for name, (bundled, step) in LOCATION_SCENARIOS.items():
        text = (SCENARIOS / f"{bundled}.toml").read_text(encoding="utf-8")
        assert text.count(step) == 1, name
        expect = step.rsplit("expect = ", 1)[1]
        where = step.split("location = ", 1)[1].split("\n", 1)[0]
        new = f'action = "location"\nlocation = {where}\nexpect = {expect}'
        (src / f"{name}.toml").write_text(text.replace(step, new), encoding="utf-8")
    out = tmp_path_factory.mktemp("location-out")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["run", str(src), "--certs", str(certs_dir), "--out", str(out)])
    return LocationRun(code, stdout.getvalue(), out)


def refresh_line(source: str, ssl_state: int) -> str:
    check = "on" if ssl_state & 0x20 else "off"
    return (f"Lab: refreshed the management point list and the site's security settings from "
            f"{source}: intranet MPs {INTRA_FQDN}, internet MP {INTERNET_FQDN}, "
            f"SSLState={ssl_state} (CRL checking {check})")


CRL_OFFLINE_AT_LOCATION = [
    f"[CCMHTTP] ERROR: URL=https://{INTERNET_FQDN}/SMS_MP/.sms_aut?MPLIST, Port=443, "
    "Options=63, Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE",
    "[CCMHTTP] AsyncCallback():",
    "[CCMHTTP] AsyncCallback(): WINHTTP_CALLBACK_STATUS_SECURE_FAILURE Encountered",
    "[CCMHTTP]            : dwStatusInformationLength is 4",
    "[CCMHTTP]            : lpvStatusInformation is 0x1",
    "[CCMHTTP]            : WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED is set",
    f"Failed to send management point list Location Request Message to {INTERNET_FQDN}",
    f"LSUpdateInternetManagementPoints: Failed to retrieve internet MPs from MP "
    f"{INTERNET_FQDN} with error 0x87d00231, retaining previous list.",
]
FORBIDDEN_AT_LOCATION = [
    f"Lab: [CCMHTTP] ERROR: URL=http://{INTRA_FQDN}/SMS_MP/.sms_aut?MPLIST, Port=80, "
    "Options=192, Code=0, Text=CCM_E_BAD_HTTP_STATUS_CODE",
    "[CCMHTTP] ERROR INFO: StatusCode=403 StatusText=Forbidden",
    f"Failed to send management point list Location Request Message to {INTRA_FQDN}",
]


def test_location_runs_meet_their_expectations(location_run: LocationRun) -> None:
    assert location_run.code == 0, location_run.stdout
    assert "4/4 scenarios passed" in location_run.stdout


def test_crl_offline_at_a_site_refresh_on_the_internet_and_its_twin(
        location_run: LocationRun) -> None:
    # ccmexec's automatic refresh after the install (1b) succeeds in both; the internet
    # refresh of step 2 fails with the CRL offline when the site checks the CRL, and succeeds
    # when it does not.
    failing = location_run.lines("crl-on-location")
    assert [e["message"] for e in failing] == [refresh_line(INTRA_FQDN, 63),
                                               *CRL_OFFLINE_AT_LOCATION]
    assert [e["type"] for e in failing] == ["1"] + ["3"] * len(CRL_OFFLINE_AT_LOCATION)
    passing = location_run.lines("crl-off-location")
    # (the twin also refreshes on the intranet at its step 3)
    assert [e["message"] for e in passing] == [refresh_line(INTRA_FQDN, 31)] * 2 + [
        refresh_line(INTERNET_FQDN, 31)]
    assert [e["type"] for e in passing] == ["1", "1", "1"]
    for got in (failing, passing):
        assert {e["component"] for e in got} == {"LocationServices"}
    # CcmMessaging.log keeps only the lines of the other steps: none failed in either
    for name in ("crl-on-location", "crl-off-location"):
        assert not (location_run.out / name / "PC01" / "CcmMessaging.log").exists()


def test_a_403_at_a_site_refresh_and_its_twin(location_run: LocationRun) -> None:
    # ccmexec's automatic refresh after the install (1b) fails first, then step 2's
    failing = location_run.lines("http-smsmp-location")
    assert [e["message"] for e in failing] == FORBIDDEN_AT_LOCATION * 2
    assert {(e["component"], e["type"]) for e in failing} == {("LocationServices", "3")}
    # on the intranet: no internet MP list line
    assert not [e for e in failing if "LSUpdateInternetManagementPoints" in e["message"]]
    passing = location_run.lines("https-smsmp-location")
    assert [(e["message"], e["component"], e["type"]) for e in passing] == [
        (refresh_line(INTRA_FQDN, 31), "LocationServices", "1")] * 2


def test_the_report_shows_and_points_at_the_location_errors(location_run: LocationRun) -> None:
    stdout = location_run.stdout
    for text in CRL_OFFLINE_AT_LOCATION + FORBIDDEN_AT_LOCATION:
        assert f"        log      {LOCATION_LOG}: {text}\n" in stdout
    assert "Lab: refreshed" not in stdout  # informational lines stay in the file
    # each step's own first error line (after ccmexec's automatic refresh's lines)
    for name, number in (("crl-on-location", 2), ("http-smsmp-location", 4)):
        path = location_run.out / name / "PC01" / LOCATION_LOG
        assert f"        open     {path}:{number}\n" in stdout


def shape(text: str) -> str:
    """A log line with its variable parts (URLs, host names, numbers, names after ``Text=``
    and flag names, status texts, padding) replaced, to compare with a reference sample."""
    text = re.sub(r"StatusText=\s*.*$", "StatusText=<TEXT>", text)
    text = re.sub(r"https?://[^\s,']+", "<URL>", text)
    text = re.sub(r"\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s,']*)?", "<HOST>", text)
    text = re.sub(r"=\s*\d+", "=<N>", text)
    text = re.sub(r"Text=[A-Z_]+", "Text=<NAME>", text)
    text = re.sub(r"FLAG_[A-Z_]+ is set", "FLAG_<NAME> is set", text)
    text = re.sub(r"Information is 0x[0-9a-f]+", "Information is <HEX>", text)
    return re.sub(r"\s+", " ", text)


def reference_samples(section: str) -> set[str]:
    """The shapes of the sample lines (in code blocks) under the reference's ``section``."""
    text = REFERENCE.read_text(encoding="utf-8")
    start = text.index(f"\n### {section} ")
    end = text.index("\n### ", start + 1)
    blocks = re.findall(r"```\n(.*?)```", text[start:end], re.DOTALL)
    return {shape(line) for block in blocks for line in block.splitlines()}


def test_product_looking_location_lines_are_reference_samples(
        location_run: LocationRun) -> None:
    samples = reference_samples("6.2")
    seen = 0
    for name in LOCATION_SCENARIOS:
        for e in location_run.lines(name):
            if e["message"].startswith("Lab: "):
                continue  # the lab's model, marked as such
            assert shape(e["message"]) in samples, e["message"]
            seen += 1
    assert seen == len([t for t in CRL_OFFLINE_AT_LOCATION + 2 * FORBIDDEN_AT_LOCATION
                        if not t.startswith("Lab: ")])
    # the sample E lines themselves, with the lab's MP where the sample names a CMG
    cmg = "XXX.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72057594037928290"
    reference = REFERENCE.read_text(encoding="utf-8")
    for text in CRL_OFFLINE_AT_LOCATION[-2:]:
        assert text.replace(INTERNET_FQDN, cmg) in reference
    # the failing twin of the check: an unquoted line has no sample shape
    assert shape("Refreshing the Management Point List from IBCM-Intra.contoso.local") \
        not in samples
    assert shape(refresh_line(INTRA_FQDN, 63)) not in samples
