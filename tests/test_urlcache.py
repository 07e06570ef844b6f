"""Tests for CryptoAPI's per-machine URL cache (lab/cryptoapi/urlcache.py) and what users see
of it: the source of each URL in the text report, the certutil-style trace, the JSON and the
CMTrace logs; the starting cache; the step actions that clear it.

Real CRLs from lab.pki (signed by the scenario's CA), real retrievals from the lab's servers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from labtest import (
    INTERNET,
    INTRA,
    LDAP_CDP,
    PKI_CDP,
    SCENARIOS,
    START,
    contoso,
    scenario_toml,
    site_table,
)

from lab import codes
from lab.clock import Clock
from lab.cryptoapi.retrieval import Retrieval
from lab.cryptoapi.urlcache import UrlCache
from lab.errors import ScenarioError
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.report.certutil import render_trace
from lab.report.html import render_run_html
from lab.report.jsonout import render_json
from lab.report.text import render_text
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text
from lab.scenario.model import Action, Zone
from lab.session import LabSession

URL = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def pki(cache: PKICache) -> BuiltPKI:
    text = scenario_toml(title="urlcache", cas=contoso())
    return build_pki(load_scenario_text(text, name="urlcache"), Clock(START), cache)


def crl_der(pki: BuiltPKI) -> bytes:
    return pki.cas["Contoso-CA"].crl_der


def retrieved(url: str, data: bytes | None) -> Retrieval:
    if data is None:
        return Retrieval(url, None, codes.ERROR_WINHTTP_NAME_NOT_RESOLVED,
                         "pki.contoso.com does not resolve", 15_000)
    return Retrieval(url, data, None, "retrieved over HTTP", 40, 200, protocol="http")


# ------------------------------------------------------------------------------------------
# Tiers, validity, clearing
# ------------------------------------------------------------------------------------------


def test_a_retrieved_crl_is_served_from_memory_then_disk_until_next_update(pki: BuiltPKI
                                                                           ) -> None:
    cache = UrlCache()
    data = crl_der(pki)
    assert cache.store(retrieved(URL, data), START)
    assert set(cache.memory) == set(cache.disk) == {URL}
    hit = cache.lookup(URL, START + HOUR)
    assert hit is not None and hit.origin == "memory" and hit.cached
    assert hit.data == data and hit.simulated_ms == 0 and hit.protocol == ""
    next_update = pki.cas["Contoso-CA"].crl.next_update_utc
    assert hit.detail == (f"from the memory cache: the CRL retrieved {START:%Y-%m-%d %H:%M} is "
                          f"kept until its nextUpdate {next_update:%Y-%m-%d %H:%M}")
    # The agent restarts: memory is gone, disk serves and is copied into memory again.
    assert cache.drop_memory() == 1
    from_disk = cache.lookup(URL, START + HOUR)
    assert from_disk is not None and from_disk.origin == "disk"
    assert "disk cache (CryptnetUrlCache)" in from_disk.detail
    again = cache.lookup(URL, START + HOUR)
    assert again is not None and again.origin == "memory"
    # Judged at the machine's time: past nextUpdate neither tier serves it (a clock that
    # jumps days), and before thisUpdate neither does.
    assert cache.lookup(URL, next_update) is None
    assert cache.lookup(URL, next_update + dt.timedelta(days=3)) is None
    assert cache.lookup(URL, pki.cas["Contoso-CA"].crl.last_update_utc - HOUR) is None
    assert cache.lookup("http://other.contoso.com/CertEnroll/Contoso-CA.crl", START) is None


def test_each_admin_action_empties_its_own_tier(pki: BuiltPKI) -> None:
    data = crl_der(pki)

    def filled() -> UrlCache:
        cache = UrlCache()
        cache.store(retrieved(URL, data), START)
        return cache

    # certutil -urlcache * delete: the disk only; the running process keeps its copy.
    cache = filled()
    assert cache.delete_disk() == 1
    hit = cache.lookup(URL, START)
    assert hit is not None and hit.origin == "memory"
    cache.drop_memory()
    assert cache.lookup(URL, START) is None  # both gone: to the network
    # Restarting the agent: the memory only.
    cache = filled()
    cache.drop_memory()
    hit = cache.lookup(URL, START)
    assert hit is not None and hit.origin == "disk"
    # ChainCacheResyncFiletime @now: nothing cached before is used, from either tier.
    cache = filled()
    assert cache.resync(START + HOUR) == 1
    assert cache.lookup(URL, START + HOUR) is None and len(cache) == 0
    # Twin: a CRL retrieved after the resync is cached again.
    assert cache.store(retrieved(URL, data), START + 2 * HOUR)
    assert cache.lookup(URL, START + 2 * HOUR) is not None


@pytest.mark.parametrize("what", ["failed", "not a CRL", "expired", "not yet valid"])
def test_only_time_valid_crls_and_certificates_are_kept(pki: BuiltPKI, what: str) -> None:
    ca = pki.cas["Contoso-CA"]
    data = {"failed": None, "not a CRL": b"<html>not a CRL</html>"}.get(what, crl_der(pki))
    now = {"expired": ca.crl.next_update_utc + HOUR,
           "not yet valid": ca.crl.last_update_utc - HOUR}.get(what, START)
    cache = UrlCache()
    assert not cache.store(retrieved(URL, data), now), what
    assert cache.lookup(URL, now) is None and len(cache) == 0
    # Twin: the good CRL at a time it is valid is kept; so is an AIA certificate, until its
    # notAfter (the lab's assumption).
    assert cache.store(retrieved(URL, crl_der(pki)), START)
    cert_url = "http://pki.contoso.com/CertEnroll/Contoso-CA.crt"
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert cache.store(retrieved(cert_url, der), START)
    hit = cache.lookup(cert_url, START)
    assert hit is not None and "the certificate retrieved" in hit.detail
    assert "notAfter" in hit.detail
    assert cache.lookup(cert_url, ca.cert.not_valid_after_utc) is None


def test_a_failure_is_remembered_for_the_step_only_where_asked(pki: BuiltPKI) -> None:
    client = UrlCache(remember_failures=True)
    failed = retrieved(URL, None)
    assert not client.store(failed, START)
    again = client.failed_earlier(URL)
    assert again is not None and again.error is codes.ERROR_WINHTTP_NAME_NOT_RESOLVED
    assert again.simulated_ms == 0 and again.origin == "memory"
    assert again.detail == ("failed earlier in this step (pki.contoso.com does not resolve); "
                            "Lab: not retrieved again in the same step (the lab's assumption)")
    client.begin_step()
    assert client.failed_earlier(URL) is None  # the next step retrieves it again
    # Twin: the MP's IIS remembers no failure (it has no steps).
    server = UrlCache()
    server.store(failed, START)
    assert server.failed_earlier(URL) is None


# ------------------------------------------------------------------------------------------
# End to end: two requests in one step, the second served from memory
# ------------------------------------------------------------------------------------------

INTERNET_CCMSETUP = (f"ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
                     f"SMSMP=https://{INTRA} CCMHOSTNAME={INTERNET}")
TWO_REQUESTS = scenario_toml(
    title="A site refresh on the internet: LDAP fails once, the HTTP CRL is retrieved once",
    # no delta CRLs: the cache's story only (ccmexec refreshes the site after the install,
    # with /NoCRLCheck still governing: no CRL is cached before the internet)
    site=site_table(), cas=contoso(f'cdp = ["ldap", "{PKI_CDP}"]' + chr(10) + "delta_cdp = []"),
    clients=f"""
[[client]]
name = "PC01"
ccmsetup = "{INTERNET_CCMSETUP}"

[[client.step]]
action = "install"
location = "intranet"

[[client.step]]
action = "location"
location = "internet"
expect = "ok"

[[client.step]]
action = "location"
location = "internet"
expect = "ok"
""")


@pytest.fixture(scope="module")
def two_requests(certs_dir: Path) -> ScenarioResult:
    scenario = load_scenario_text(TWO_REQUESTS, name="two-requests")
    result: RunResult = asyncio.run(run_loaded([scenario], certs=certs_dir))
    return result.scenarios[0]


def test_the_second_request_of_a_step_is_served_from_memory(two_requests: ScenarioResult
                                                            ) -> None:
    steps = two_requests.clients[0].scenario_steps
    first = steps[1]  # location @ internet: MPLIST, then the location request
    assert first.outcome == "ok"
    # One LDAP time-out for the whole step (15 s, as its text says), not one per request.
    assert first.simulated_ms == 15_000
    assert first.revocation is not None
    urls = [(u.url, u.result, u.origin, u.simulated_ms) for u in first.revocation.urls]
    # The step's last request: LDAP not retried (failed earlier in the step), HTTP from memory.
    assert urls == [(LDAP_CDP, "failed", "memory", 0), (PKI_CDP, "verified", "memory", 0)]
    assert first.revocation.urls[0].error is codes.ERROR_DS_SERVER_DOWN
    log = [line.text for line in first.log if line.file == "LocationServices.log"]
    assert f"Lab: CryptoAPI took {PKI_CDP} from its memory URL cache (not retrieved)" in log
    assert (f"Lab: CryptoAPI did not retrieve {LDAP_CDP} again: it failed earlier in this step "
            "(the lab's assumption)") in log
    # The next step tries LDAP again (15 s), the HTTP CRL stays in memory.
    second = steps[2]
    assert second.simulated_ms == 15_000
    assert second.revocation is not None
    assert [(u.result, u.origin) for u in second.revocation.urls] == [
        ("failed", "memory"), ("verified", "memory")]


def test_reports_show_where_each_crl_came_from(two_requests: ScenarioResult) -> None:
    run = RunResult(scenarios=[two_requests])
    data = json.loads(render_json(run, as_list=False))
    own = [s for s in data["clients"][0]["steps"] if not s["automatic"]]
    urls = own[1]["revocation"]["urls"]
    assert [(u["url"], u["source"], u["simulated_ms"]) for u in urls] == [
        (LDAP_CDP, "memory", 0), (PKI_CDP, "memory", 0)]
    assert own[0]["revocation"]["urls"] == []  # /NoCRLCheck
    text = render_text(run)
    assert "2. location @ internet  ok  (expected ok)  [CRL from the memory cache]" in text
    verbose = render_text(run, verbose=True)
    assert f"verified      {PKI_CDP} (from the memory cache)" in verbose
    assert "0 s <span class=\"muted\">(memory cache)</span>" in render_run_html(run)
    trace = render_trace(run)
    assert "    Lab: from the machine's memory URL cache, not retrieved" in trace
    assert ("    Lab: not retrieved again: the URL failed earlier in this step (the lab's "
            "assumption)") in trace


# ------------------------------------------------------------------------------------------
# The bundled scenarios: clearing on the internet fails, keeping works
# ------------------------------------------------------------------------------------------


def _step(result: ScenarioResult, client: str, number: int) -> StepResult:
    found = next(c for c in result.clients if c.name == client)
    return found.scenario_steps[number - 1]


@pytest.fixture(scope="module")
def bundled(certs_dir: Path) -> dict[str, ScenarioResult]:
    files = [SCENARIOS / "cache-cleared-on-internet.toml",
             SCENARIOS / "cache-kept-on-internet.toml"]
    result = asyncio.run(run_loaded(load_all(files), certs=certs_dir))
    return {r.scenario.name: r for r in result.scenarios}


def test_clearing_the_url_cache_on_the_internet_fails_the_next_request(
        bundled: dict[str, ScenarioResult]) -> None:
    cleared = bundled["cache-cleared-on-internet"]
    assert cleared.passed
    for client, number in (("PC01", 4), ("PC02", 5)):
        before = _step(cleared, client, 2)
        assert before.outcome == "ok" and before.revocation is not None
        assert [u.origin for u in before.revocation.urls if u.crl == "base"] == [
            "disk", ""]  # HTTP not tried
        after = _step(cleared, client, number)
        assert after.outcome == "fail"
        assert after.error is codes.CRYPT_E_REVOCATION_OFFLINE and after.error.hex == "0x80092013"
        assert after.revocation is not None
        assert [(u.origin, u.simulated_ms) for u in after.revocation.urls
                if u.crl == "base"] == [
            ("network", 15_000), ("network", 15_000)]
    resync = _step(cleared, "PC01", 3)
    assert resync.action == "resync-chain-cache" and resync.outcome == "ok"
    assert resync.notes == [
        "certutil -setreg chain\\ChainCacheResyncFiletime @now: 2 cached object(s) no longer "
        "used, from memory or disk (Lab: the lab's reading of \"forces a re-sync\")"]
    filled = _step(cleared, "PC01", 1).notes[0]
    assert filled.startswith("Lab: URL cache filled on the intranet at ")
    delta = LDAP_CDP.replace("?certificateRevocationList?", "?deltaRevocationList?")
    assert filled.endswith(f"by a chain check of {INTRA}'s certificate: 2 object(s) in the disk "
                           f"cache ({LDAP_CDP}, {delta})")  # the base CRL and its delta


def test_its_twin_keeps_the_cache_and_works(bundled: dict[str, ScenarioResult]) -> None:
    kept = bundled["cache-kept-on-internet"]
    assert kept.passed
    origins = {(c.name, i + 1): s.revocation.urls[0].origin
               for c in kept.clients for i, s in enumerate(c.scenario_steps)
               if s.revocation is not None and s.revocation.urls}
    assert origins == {("PC01", 2): "disk", ("PC01", 3): "memory",
                       ("PC02", 2): "disk", ("PC02", 4): "memory",  # disk deleted, memory kept
                       ("PC03", 2): "disk", ("PC03", 4): "disk"}  # memory dropped, disk kept
    for client in kept.clients:
        assert all(s.outcome == "ok" for s in client.steps)
    assert _step(kept, "PC02", 3).notes == [
        "certutil -urlcache * delete: 2 object(s) deleted from the disk cache (CryptnetUrlCache); "
        "the running SMS Agent Host keeps its memory copies"]
    assert _step(kept, "PC03", 3).notes == [
        "The SMS Agent Host service restarted: 2 object(s) dropped from its memory URL cache; "
        "the disk cache stays"]


# ------------------------------------------------------------------------------------------
# The starting cache: the scenario key, and when the fill's objects are not valid yet
# ------------------------------------------------------------------------------------------


def _with_cache(table: str, ca_extra: str = "") -> str:
    return scenario_toml(title="starting cache", site=site_table(), cas=contoso(ca_extra),
                         clients=f"""
[[client]]
name = "PC01"
ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA}"
{table}
[[client.step]]
action = "install"
location = "internet"
""")


def test_the_starting_cache_key() -> None:
    spec = load_scenario_text(_with_cache('[client.url_cache]\nfilled_on = "intranet"\n'
                                          'at = "-1d"\n'), name="x").clients[0]
    assert spec.url_cache is not None
    assert spec.url_cache.filled_on is Zone.INTRANET
    assert spec.url_cache.at == -dt.timedelta(days=1)
    assert load_scenario_text(_with_cache('url_cache = "empty"\n'),
                              name="x").clients[0].url_cache is None
    assert load_scenario_text(_with_cache(""), name="x").clients[0].url_cache is None


@pytest.mark.parametrize("table, where, message", [
    ('url_cache = "full"\n', "client[0].url_cache",
     "expected \"empty\" or a [client.url_cache] table with filled_on = \"intranet\" (and at = "
     "\"-1d\"), got 'full'"),
    ("url_cache = 3\n", "client[0].url_cache", "got an integer"),
    ('[client.url_cache]\nfilled_on = "home"\n', "client[0].url_cache.filled_on",
     "expected one of 'intranet', 'internet', 'vpn', 'dmz', got 'home'"),
    ("[client.url_cache]\nat = \"-1d\"\n", "client[0].url_cache.filled_on", "required"),
    ('[client.url_cache]\nfilled_on = "intranet"\nwhen = "-1d"\n', "client[0].url_cache",
     "unknown key 'when'"),
])
def test_a_bad_starting_cache_is_named(table: str, where: str, message: str) -> None:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(_with_cache(table), name="bad-cache")
    assert e.value.exit_code == 2
    assert where in str(e.value) and message in str(e.value)


def test_a_cache_filled_yesterday_holds_what_was_valid_yesterday(certs_dir: Path) -> None:
    seed4 = (SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml").read_text(encoding="utf-8")
    start = seed4.index("[[client.step]]")
    table = '[client.url_cache]\nfilled_on = "intranet"\nat = "-1d"\n\n'
    # The CA published its CRL two days ago: yesterday's fill kept it, and on the internet
    # (where neither CDP answers) the inventory checks the CRL from the disk cache.
    published = (seed4[:start] + table + seed4[start:]).replace(
        'domain = "contoso.local"\n',
        'domain = "contoso.local"\ncrl_this_update = "-2d"\ndelta_cdp = []\n', 1)
    # Twin: a CRL published ten minutes ago was not valid yet when the cache was filled.
    fresh = seed4[:start] + table + seed4[start:]
    with LabSession(certs_dir) as labs:
        results = []
        for text in (published, fresh):
            client = labs.stage(text).client()
            first = client.step("install", "intranet", expect="ok")  # ccmexec refreshes
            results.append((first, client.step("inventory", "internet")))
    (kept_note, works), (fresh_note, fails) = results
    assert kept_note.notes[0].startswith("Lab: URL cache filled on the intranet at ")
    assert "1 object(s) in the disk cache" in kept_note.notes[0]
    assert works.outcome == "ok" and works.revocation is not None
    assert works.revocation.urls[0].origin == "disk"
    assert "0 object(s) in the disk cache" in fresh_note.notes[0]
    assert fresh_note.notes[1].startswith("Lab: not cached (failed or not time-valid then): ")
    assert fails.error is codes.CRYPT_E_REVOCATION_OFFLINE


def test_session_steps_clear_the_cache(certs_dir: Path) -> None:
    text = (SCENARIOS / "cache-kept-on-internet.toml").read_text(encoding="utf-8")
    with LabSession(certs_dir) as labs:
        client = labs.stage(text).client("PC01")
        for action in ("install", "register", "location"):
            client.step(action, "intranet", expect="ok")
        assert client.step("inventory", "internet", expect="ok").revocation is not None
        cleared = client.step("resync-chain-cache", "internet", expect="ok")
        assert cleared.action == Action.RESYNC_CHAIN_CACHE.value
        failed = client.step("inventory", "internet", expect="CRYPT_E_REVOCATION_OFFLINE")
        assert failed.error is codes.CRYPT_E_REVOCATION_OFFLINE
