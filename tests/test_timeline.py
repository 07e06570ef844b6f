"""Issue 15 item 3: time as a timeline. Step times (``at``/``after``), the CA's CRL publication
schedule (periods, overlap, CRL numbers that increase, a CA switched off), servers that serve
what was published at the lab clock's time, and a 30-day scenario that runs without sleeping.

Every assertion is on simulated (lab) time, CRL fields and codes: none on wall time.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from labtest import (
    SCENARIOS,
    START,
    client_table,
    contoso,
    machine,
    scenario_toml,
    site_table,
    stage_scenario,
    zone_session,
)

from lab.clock import Clock
from lab.errors import ScenarioError
from lab.pki.build import build_pki
from lab.pki.cache import PKICache
from lab.pki.schedule import CrlSchedule, default_overlap
from lab.report.jsonout import step_dict
from lab.results.observations import crl_number
from lab.run import run_paths
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import CAKind, CASpec, Zone
from lab.scenario.timeline import format_offset, schedule
from lab.servers.harness import RunningLab
from lab.tools.bench import timeline as bench_timeline
from lab.tools.bench.bench import run_bench
from lab.tools.bench.figures import BenchOptions

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)


def steps(*lines: str) -> str:
    """``[[client.step]]`` tables, one per entry (each entry: its extra lines)."""
    return "".join(f'\n[[client.step]]\naction = "policy"\nlocation = "intranet"\n{extra}\n'
                   for extra in lines)


def with_steps(*extra: str, ca: str = "") -> str:
    return scenario_toml(title="timeline", site=site_table(), cas=contoso(ca),
                         clients=client_table() + steps(*extra))


def refused(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, file="t.toml")
    return info.value


# -- loading: step times --------------------------------------------------------------------


def test_step_times_load_and_schedule_in_time_order() -> None:
    s = load_scenario_text(with_steps('at = "+8d"', 'after = "36h"', "", 'at = "+7d 12h30m"'
                                      .replace('at = "+7d 12h30m"', 'after = "1m"')))
    client = s.clients[0]
    assert client.steps[1].at == 8 * DAY
    assert client.steps[2].after == 36 * HOUR
    assert client.steps[3].at is None and client.steps[3].after is None
    offsets = [p.offset for p in schedule(s.clients)]
    # install +1 s; +8d; +8d 36h; a second later; a minute after that
    assert offsets == [dt.timedelta(seconds=1), 8 * DAY, 8 * DAY + 36 * HOUR,
                       8 * DAY + 36 * HOUR + dt.timedelta(seconds=1),
                       8 * DAY + 36 * HOUR + dt.timedelta(seconds=61)]


def test_untimed_steps_keep_the_files_order_across_clients() -> None:
    two = (client_table("PC01") + steps("") + client_table("PC02") + steps(""))
    s = load_scenario_text(scenario_toml(title="t", cas=contoso(), clients=two))
    planned = [(p.client, p.index, p.offset.total_seconds()) for p in schedule(s.clients)]
    assert planned == [(0, 0, 1), (0, 1, 2), (1, 0, 3), (1, 1, 4)]


def test_clients_interleave_by_time() -> None:
    two = (client_table("PC01") + steps('at = "+3d"')
           + client_table("PC02").replace('location = "intranet"\n',
                                          'location = "intranet"\nat = "+1m"\n')
           + steps('at = "+2d"'))
    s = load_scenario_text(scenario_toml(title="t", cas=contoso(), clients=two))
    order = [(s.clients[p.client].name, p.index) for p in schedule(s.clients)]
    assert order == [("PC01", 0), ("PC02", 0), ("PC02", 1), ("PC01", 1)]


@pytest.mark.parametrize(("extra", "key", "fragment"), [
    ('at = "+1d"\nafter = "1h"', "client[0].step[1].after", "not both"),
    ('after = "-1h"', "client[0].step[1].after", "not negative"),
    ('at = "2026-12-01"', "client[0].step[1].at", "expected a time after the scenario's start"),
    ('at = "-1d"', "client[0].step[1].at", "expected a time after the scenario's start"),
    ("at = 5", "client[0].step[1].at", "got an integer"),
    ('after = "soon"', "client[0].step[1].after", "expected a time after the client's previous"),
])
def test_bad_step_times_are_refused(extra: str, key: str, fragment: str) -> None:
    err = refused(with_steps(extra))
    assert err.key == key and err.file == "t.toml" and err.line is not None
    assert fragment in str(err)


def test_a_step_before_its_clients_previous_step_is_refused() -> None:
    err = refused(with_steps('at = "+2d"', 'at = "+1d"'))
    assert err.key == "client[0].step[2].at"
    assert "would happen before step 2 of client 'PC01' (+1d 00:00:00, that one at " \
           "+2d 00:00:00)" in str(err)
    # Its twin, in order, loads.
    load_scenario_text(with_steps('at = "+1d"', 'at = "+2d"'))


def test_bad_times_exit_2_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(with_steps('at = "+1d"\nafter = "1h"'))
    done = subprocess.run([sys.executable, "-m", "lab", "run", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "bad.toml" in done.stderr and "client[0].step[1].after" in done.stderr
    assert "Traceback" not in done.stderr


# -- loading: the CA's schedule keys ----------------------------------------------------------


def test_ca_schedule_keys_load_with_ad_cs_defaults() -> None:
    s = load_scenario_text(with_steps(""))
    ca = s.cas[0]
    assert (ca.crl_period, ca.crl_overlap, ca.delta_period, ca.delta_overlap,
            ca.offline_from) == (7 * DAY, None, DAY, None, None)
    s = load_scenario_text(with_steps("", ca='crl_period = "2d"\ncrl_overlap = "6h"\n'
                                      'delta_period = "12h"\ndelta_overlap = "1h"\n'
                                      'offline_from = "+1d 12h"'))
    ca = s.cas[0]
    assert (ca.crl_period, ca.crl_overlap, ca.delta_period, ca.delta_overlap,
            ca.offline_from) == (2 * DAY, 6 * HOUR, 12 * HOUR, HOUR, 36 * HOUR)


@pytest.mark.parametrize(("ca", "key", "fragment"), [
    ('crl_period = "0d"', "ca[0].crl_period", "longer than zero"),
    ('crl_period = "-7d"', "ca[0].crl_period", "not negative"),
    ('crl_period = "weekly"', "ca[0].crl_period", "expected a base CRL period"),
    ('crl_overlap = "8d"', "ca[0].crl_overlap", "must not be longer than its publishing period"),
    ('delta_period = "0d"\ndelta_overlap = "1h"', "ca[0].delta_overlap", "publishes no delta"),
    ('offline_from = "-1d"', "ca[0].offline_from", "at or after the scenario's start"),
    ('offline_from = "monday"', "ca[0].offline_from", "expected a time relative to the run"),
])
def test_bad_schedule_keys_are_refused(ca: str, key: str, fragment: str) -> None:
    err = refused(with_steps("", ca=ca))
    assert err.key == key and fragment in str(err)


# -- the schedule -----------------------------------------------------------------------------


def spec(**kw: object) -> CASpec:
    return CASpec(name="Contoso-CA", kind=CAKind.ENTERPRISE, host="ca01.contoso.local",
                  domain="contoso.local", **kw)  # type: ignore[arg-type]


def test_default_overlap_is_ten_percent_at_most_twelve_hours() -> None:
    assert default_overlap(7 * DAY) == 12 * HOUR
    assert default_overlap(DAY) == dt.timedelta(hours=2, minutes=24)
    assert default_overlap(dt.timedelta(hours=10)) == HOUR


def test_base_crls_are_published_every_period_with_increasing_numbers() -> None:
    sched = CrlSchedule(spec(), START, deltas=False)
    first, delta = sched.current(START)
    assert delta is None
    assert (first.number, first.this_update, first.next_update, first.next_publish) == (
        1, START - dt.timedelta(minutes=10), START + 7 * DAY + 12 * HOUR, START + 7 * DAY)
    assert sched.current(START + 7 * DAY - dt.timedelta(seconds=1))[0].number == 1
    second = sched.current(START + 7 * DAY)[0]
    assert (second.number, second.published) == (2, START + 7 * DAY)
    assert [c.number for c in sched.published_until(START + 30 * DAY)] == [1, 2, 3, 4, 5]


def test_base_and_delta_crls_share_one_increasing_sequence() -> None:
    sched = CrlSchedule(spec(), START, deltas=True)
    issued = sched.published_until(START + 15 * DAY)
    numbers = [c.number for c in issued]
    assert numbers == list(range(1, len(issued) + 1))   # no gap, no repeat
    kinds = ["d" if c.is_delta else "B" for c in issued]
    assert kinds[:10] == ["B", "d", "d", "d", "d", "d", "d", "d", "B", "d"]
    base, delta = sched.current(START + 8 * DAY + HOUR)
    assert (base.number, delta.number if delta else None) == (9, 11)
    assert delta is not None and delta.delta_of == 9       # it completes the current base
    assert delta.next_update == START + 9 * DAY + dt.timedelta(hours=2, minutes=24)


def test_a_ca_switched_off_publishes_nothing_from_then_on() -> None:
    sched = CrlSchedule(spec(offline_from=8 * DAY), START, deltas=True)
    base, delta = sched.current(START + 30 * DAY)
    assert base.published == START + 7 * DAY                # the last base before +8d
    assert delta is not None and delta.published == START + 7 * DAY   # +8d's never came
    assert base.next_update < START + 30 * DAY               # long expired
    # The changes the MP's verdict cache waits for stop at the last CRL's expiry.
    assert sched.changes_after(START + 30 * DAY) is None
    assert sched.changes_after(START + 8 * DAY) == delta.next_update
    # Switched off at the start: publication 0 only.
    at_start = CrlSchedule(spec(offline_from=dt.timedelta(0)), START, deltas=False)
    assert at_start.current(START + 20 * DAY)[0].number == 1


def test_fixed_crl_dates_are_the_cas_last_crl() -> None:
    sched = CrlSchedule(spec(crl_this_update=-8 * DAY, crl_next_update=-HOUR), START,
                        deltas=False)
    for when in (START, START + 30 * DAY):
        base = sched.current(when)[0]
        assert (base.number, base.next_update, base.next_publish) == (1, START - HOUR, None)


def test_the_built_pki_signs_the_crl_of_each_publication(cache: PKICache) -> None:
    text = scenario_toml(title="t", cas=contoso('delta_cdp = ["http"]'),
                         clients=client_table())
    pki = build_pki(load_scenario_text(text), Clock(START), cache)
    ca = pki.cas["Contoso-CA"]
    assert crl_number(ca.crl) == 1 and ca.delta_crl is not None
    assert crl_number(ca.delta_crl) == 2
    later = {p.url: p.data for p in pki.publications_at(START + 7 * DAY + HOUR)}
    base = x509.load_der_x509_crl(later["http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"])
    delta = x509.load_der_x509_crl(later["http://ca01.contoso.local/CertEnroll/Contoso-CA+.crl"])
    assert (crl_number(base), crl_number(delta)) == (9, 10)
    assert base.last_update_utc == START + 7 * DAY - dt.timedelta(minutes=10)
    assert delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value \
        .crl_number == 9
    key = ca.cert.public_key()
    assert base.is_signature_valid(key) and delta.is_signature_valid(key)  # type: ignore[arg-type]
    # Only what was asked for was signed: two CRLs, not the 10 of the week between.
    assert pki.publisher is not None and pki.publisher.signed_count == 2
    assert pki.publication_key(START) != pki.publication_key(START + 7 * DAY)
    assert pki.publication_key(START) == pki.publication_key(START + 12 * HOUR)


# -- the servers serve what was published at the lab clock's time -----------------------------


async def test_cdp_and_directory_serve_the_crl_published_at_the_clocks_time(
        lab: RunningLab, cache: PKICache) -> None:
    text = scenario_toml(title="t", cas=contoso('cdp = ["ldap", "http"]'),
                         clients=client_table())
    dep = await stage_scenario(lab, cache, text, name="timeline-serve")
    http_url = "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"
    async with zone_session(lab, dep.network, machine(Zone.INTRANET)) as session:
        async def fetched() -> int | None:
            async with session.get(http_url) as response:
                return crl_number(x509.load_der_x509_crl(await response.read()))
        assert await fetched() == 1
        dep.clock.advance_to(START + 14 * DAY + HOUR)
        # base CRLs at 0, 7d and 14d and a delta CRL every day share one number sequence
        # (the base first when both are due): 2 bases and 14 deltas before, so 17
        assert await fetched() == 17
    # The directory holds the same bytes as the web server, at the same time.
    ldap = next(p for p in dep.publications if p.url.startswith("ldap:"))
    web = dep.http_publications[("ca01.contoso.local:80", "/CertEnroll/Contoso-CA.crl")]
    assert ldap.data == web.data
    assert crl_number(x509.load_der_x509_crl(ldap.data)) == 17


# -- end to end -------------------------------------------------------------------------------


def test_ca_switched_off_and_its_twin(certs_dir: Path) -> None:
    run = run_paths([SCENARIOS / "ca-switched-off.toml", SCENARIOS / "ca-switched-on.toml"],
                    certs=certs_dir)
    off, on = run.scenarios
    assert off.passed and on.passed
    for result, last in ((off, "fail"), (on, "ok")):
        for client in result.clients:
            outcomes = [s.outcome for s in client.steps]
            assert outcomes[:-1] == ["ok"] * (len(outcomes) - 1)
            assert outcomes[-1] == last, (result.scenario.name, client.name)
    for client in off.clients:
        final = client.steps[-1]
        assert final.error is not None and final.error.name == "CRYPT_E_REVOCATION_OFFLINE"
        assert final.revocation is not None
        assert "expired" in {u.result for u in final.revocation.urls}
        assert "certutil -crl" in final.fix and "switched off" in final.fix
    pc01 = off.clients[0].scenario_steps
    # Inside and outside: PC01 on the intranet, PC02 on the internet, at their times.
    assert [format_offset(s.since_start) for s in pc01 if s.since_start is not None][3:] == [
        "+2d 00:00:00", "+7d 11:00:00", "+7d 13:00:00"]
    assert off.clients[1].steps[-1].location == "internet"
    # The JSON carries each step's time.
    data = step_dict(pc01[-1])
    assert data["since_start"] == "+7d 13:00:00"
    assert data["at"].endswith("Z") and dt.datetime.fromisoformat(data["at"]) == pc01[-1].at


def test_a_thirty_day_scenario_runs_on_simulated_time(certs_dir: Path,
                                                     tmp_path: Path) -> None:
    # The bench's 30-day scenario through the command line: every step at its time, a month
    # of lab time (nothing sleeps: the bench's timeline group compares the wall times).
    path = tmp_path / "month.toml"
    path.write_text(bench_timeline.text("30 days"))
    done = subprocess.run([sys.executable, "-m", "lab", "run", str(path), "--format", "json",
                           "--certs", str(certs_dir)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    steps_json = [s for s in json.loads(done.stdout)["clients"][0]["steps"]
                  if not s["automatic"]]
    assert [s["since_start"] for s in steps_json] == [
        "+00:00:01", "+00:00:08", "+00:00:09", "+10d 00:00:00", "+20d 00:00:00",
        "+30d 00:00:00"]
    assert all(s["outcome"] == "ok" for s in steps_json)
    first = dt.datetime.fromisoformat(steps_json[0]["at"])
    last = dt.datetime.fromisoformat(steps_json[-1]["at"])
    assert last - first == 30 * DAY - dt.timedelta(seconds=1)


def test_the_bench_has_a_timeline_group_with_a_ratio(certs_dir: Path) -> None:
    res = run_bench(BenchOptions(certs=str(certs_dir), quick=True, repeat=1,
                                 only=["timeline"]))
    assert res.errors == []
    figures = {f.key: f for f in res.figures}
    assert set(figures) == {"timeline_30d_s", "timeline_1m_s", "timeline_ratio"}
    ratio = figures["timeline_ratio"]
    assert ratio.goal is not None and ratio.goal.text == "< 1.5x (nothing sleeps)"
    assert ratio.samples[0] > 0
    # The 30-day run signed only the CRLs it served: base and delta at three instants.
    assert figures["timeline_30d_s"].note == "6 CRLs signed after the build (only those served)"


def test_a_session_client_steps_at_a_later_time(certs_dir: Path) -> None:
    from lab.session import LabSession

    with LabSession(certs_dir) as labs:
        site = labs.stage(SCENARIOS / "ca-switched-off.toml")
        client = site.client("PC02")
        for action in ("install", "register", "location"):
            client.step(action, "intranet", expect="ok")
        ok = client.step("inventory", "internet", expect="ok", at=2 * DAY)
        assert ok.since_start is not None and ok.since_start >= 2 * DAY
        failed = client.step("inventory", "internet", after=6 * DAY)
        assert failed.error is not None and failed.error.name == "CRYPT_E_REVOCATION_OFFLINE"
        assert failed.since_start is not None and failed.since_start >= 8 * DAY
        with pytest.raises(ValueError, match="not both"):
            client.step("policy", "internet", at=DAY, after=DAY)


def test_it_worked_yesterday_and_its_twin(certs_dir: Path) -> None:
    # A laptop caches the CRL on the intranet, works from that cache at home all week, and
    # fails on the first request after the cached CRL's nextUpdate; with an HTTP CDP on the
    # internet the same laptop fetches the new CRL from home and keeps working.
    run = run_paths([SCENARIOS / "it-worked-yesterday.toml",
                     SCENARIOS / "it-worked-yesterday-http-cdp.toml"], certs=certs_dir)
    failing, twin = run.scenarios
    assert failing.passed and twin.passed
    steps = failing.clients[0].scenario_steps
    assert [format_offset(s.since_start) for s in steps[2:] if s.since_start is not None] == [
        "+08:00:02", "+3d 00:00:00", "+7d 11:00:00", "+7d 13:00:00"]
    assert [s.outcome for s in steps] == ["ok"] * 5 + ["fail"]
    # at home, every request until the nextUpdate is served from the memory cache
    for step in steps[2:5]:
        assert step.location == "internet" and step.revocation is not None
        assert {u.origin for u in step.revocation.urls if u.result == "verified"} == {"memory"}
        assert step.simulated_ms == 0
    last = steps[-1]
    assert last.error is not None and last.error.name == "CRYPT_E_REVOCATION_OFFLINE"
    assert last.revocation is not None
    assert [(u.result, u.origin, u.simulated_ms) for u in last.revocation.urls] == [
        ("failed", "network", 15000), ("failed", "network", 15000)]
    assert "cached until its nextUpdate" in last.explanation
    assert "has expired, so CryptoAPI went to the network for it" in last.explanation
    # the twin: after the nextUpdate, LDAP waits out 15 s and HTTP brings the new CRL
    good = twin.clients[0].scenario_steps[-1]
    assert good.outcome == "ok" and good.revocation is not None
    assert [(u.result, u.origin) for u in good.revocation.urls] == [
        ("failed", "network"), ("verified", "network")]
