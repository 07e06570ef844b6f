"""Explanations and fixes that must be right (issue 16): each case is a real run of a small
scenario, checked on the words the reader is shown, next to its passing twin.

Then three walks over every bundled scenario's results: no trade-off fix comes before a fix
that restores what is broken, no sentence of an explanation or fix starts in lower case, and
every trade-off says that it lowers security for every client.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from labtest import CCMSETUP, INTERNET, INTRA, SCENARIOS, contoso, mp_table, site_table

from lab import codes
from lab.judge.explain import TRADE_OFF, Fix, Rank, render_fixes
from lab.report.jsonout import step_dict
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text

ROOT_HTTP_INTERNAL = "http://rootca.contoso.local/CertEnroll/Contoso%20Root%20CA.crl"
ROOT_HTTP_PUBLIC = "http://pki.contoso.com/CertEnroll/Contoso%20Root%20CA.crl"
ISSUING_HTTP_PUBLIC = "http://pki.contoso.com/CertEnroll/Contoso%20Issuing%20CA.crl"
CLIENTS_CDP = "http://pki.contoso.com/CertEnroll/Contoso-Clients-CA.crl"
WITH_HOSTNAME = f"{CCMSETUP} CCMHOSTNAME={INTERNET}"


def _two_tier(root_cdp: str) -> str:
    """A two-tier PKI whose issuing CA publishes its CRL on the internet; the root's CRL is
    at ``root_cdp``. The client installs with /NoCRLCheck (so its URL cache holds no CRL),
    ccmexec refreshes its site (CRL checking on from then) and the client refreshes again from
    the internet."""
    return f"""
[scenario]
title = "two tier"

{site_table()}
[[ca]]
name = "Contoso Root CA"
kind = "enterprise"
host = "rootca.contoso.local"
domain = "contoso.local"
cdp = ["{root_cdp}"]

[[ca]]
name = "Contoso Issuing CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
parent = "Contoso Root CA"
cdp = ["{ISSUING_HTTP_PUBLIC}"]

{mp_table('issuer = "Contoso Issuing CA"')}
[[client]]
name = "PC01"
ccmsetup = "{WITH_HOSTNAME} /NoCRLCheck"
[client.cert]
issuer = "Contoso Issuing CA"
[[client.step]]
action = "install"
location = "intranet"
[[client.step]]
action = "location"
location = "internet"
"""


def _dmz(crl: str) -> str:
    """An MP in the DMZ; the client certificates' CA publishes over HTTP where the DMZ reaches
    it, with ``crl`` lines (its CRL dates) added to that CA."""
    return f"""
[scenario]
title = "dmz"

{site_table("check_crl = false")}
{contoso()}
[[ca]]
name = "Contoso-Clients-CA"
kind = "enterprise"
host = "ca03.contoso.local"
domain = "contoso.local"
cdp = ["{CLIENTS_CDP}"]
{crl}

[mp]
intranet_fqdn = "{INTRA}"
internet_fqdn = "{INTERNET}"
zone = "dmz"

[mp.cert]
issuer = "Contoso-CA"

[[client]]
name = "PC01"
ccmsetup = "{CCMSETUP} /NoCRLCheck"
[client.cert]
issuer = "Contoso-Clients-CA"
[[client.step]]
action = "install"
location = "intranet"
"""


def _skewed(skew: str) -> str:
    """CRL checking on at install; the client's clock is off by ``skew``. The certificates
    are a month old (a fresh one, backdated 10 minutes as AD CS does, would not yet be valid
    by a clock an hour behind): only the CRL, published 10 minutes ago, is in its future."""
    return f"""
[scenario]
title = "client clock"

{site_table()}
{contoso()}
{mp_table('issuer = "Contoso-CA"' + chr(10) + 'not_before = "-30d"')}
[[client]]
name = "PC01"
ccmsetup = "{CCMSETUP}"
clock_skew = "{skew}"
[client.cert]
issuer = "Contoso-CA"
not_before = "-30d"
[[client.step]]
action = "install"
location = "intranet"
"""


def _cn_only(subject: str) -> str:
    """The MP certificate's SAN has the intranet FQDN only; its subject CN is ``subject``."""
    return f"""
[scenario]
title = "cn"

{site_table("check_crl = false")}
{contoso()}
{mp_table(f'san = ["{INTRA}"]' + chr(10) + f'subject = "{subject}"' + chr(10)
          + 'issuer = "Contoso-CA"')}
[[client]]
name = "PC01"
ccmsetup = "{WITH_HOSTNAME} /NoCRLCheck"
[[client.step]]
action = "install"
location = "intranet"
[[client.step]]
action = "location"
location = "internet"
"""


def _usage(eku: str) -> str:
    """The client's only certificate has the EKUs ``eku``."""
    return f"""
[scenario]
title = "eku"

{site_table("check_crl = false")}
{contoso()}
{mp_table()}
[[client]]
name = "PC01"
ccmsetup = "{CCMSETUP} /NoCRLCheck"
[client.cert]
issuer = "Contoso-CA"
eku = {eku}
[[client.step]]
action = "install"
location = "intranet"
"""


CASES = {
    "root-crl-internal": _two_tier(ROOT_HTTP_INTERNAL),
    "root-crl-public": _two_tier(ROOT_HTTP_PUBLIC),
    "dmz-crl-expired": _dmz('crl_this_update = "-8d"\ncrl_next_update = "-1h"'),
    "dmz-crl-current": _dmz(""),
    "client-clock-behind": _skewed("-1h"),
    "client-clock-right": _skewed("0s"),
    "cn-internet-san-intranet": _cn_only(INTERNET),
    "san-both": _cn_only(INTRA).replace(f'san = ["{INTRA}"]', f'san = ["{INTRA}", "{INTERNET}"]'),
    "server-auth-only": _usage('["server_auth"]'),
    "client-auth": _usage('["client_auth"]'),
}


@pytest.fixture(scope="module")
def cases(certs_dir: Path) -> dict[str, ScenarioResult]:
    scenarios = [load_scenario_text(text, name=name) for name, text in CASES.items()]
    result: RunResult = asyncio.run(run_loaded(scenarios, certs=certs_dir))
    return {r.scenario.name: r for r in result.scenarios}


@pytest.fixture(scope="module")
def bundled(certs_dir: Path) -> RunResult:
    return asyncio.run(run_loaded(load_all(sorted(SCENARIOS.glob("*.toml"))),
                                  certs=certs_dir))


def steps(result: ScenarioResult) -> list[StepResult]:
    (client,) = result.clients
    return client.steps


def last(result: ScenarioResult) -> StepResult:
    return steps(result)[-1]


def assert_all_ok(result: ScenarioResult) -> None:
    assert [s.outcome for s in steps(result)] == ["ok"] * len(steps(result)), [
        s.explanation for s in steps(result)]


# ------------------------------------------------------------------------------------------
# the cases
# ------------------------------------------------------------------------------------------


def test_two_tier_root_crl_unreachable_names_the_issuing_ca(
        cases: dict[str, ScenarioResult]) -> None:
    step = last(cases["root-crl-internal"])
    assert step.outcome == "fail" and step.error is codes.CRYPT_E_REVOCATION_OFFLINE
    text, fix = step.explanation, step.fix
    # the issuing CA's own CRL was good: the text says whose revocation is unknown
    assert "CN=Contoso Issuing CA" in text
    assert ("the revocation of the issuing CA's certificate (CN=Contoso Issuing CA"
            in text), text
    assert "Contoso Root CA" in text
    assert "No URL gave a good CRL, so revocation is unknown" not in text
    # the fix: publish the root's CRL where clients reach it, not the MP certificate
    assert fix.startswith("Publish the CRL of Contoso Root CA over HTTP where clients on the "
                          "internet reach it"), fix
    assert "reissue the issuing CA certificate" in fix
    assert "reissue the MP certificate" not in fix
    twin = cases["root-crl-public"]
    assert_all_ok(twin)


def test_403_13_for_an_expired_crl_says_republish(cases: dict[str, ScenarioResult]) -> None:
    step = last(cases["dmz-crl-expired"])
    assert step.outcome == "fail" and step.http_status == "403.13"
    assert "certutil -crl" in step.fix and "republish" in step.fix.lower(), step.fix
    assert "publish that CRL where the MP can reach it" not in step.fix
    assert "expired" in step.explanation
    assert_all_ok(cases["dmz-crl-current"])


def test_crl_not_yet_valid_for_a_client_whose_clock_is_behind(
        cases: dict[str, ScenarioResult]) -> None:
    step = last(cases["client-clock-behind"])
    assert step.outcome == "fail" and step.error is codes.CRYPT_E_REVOCATION_OFFLINE
    assert "CA's clock" not in step.fix, step.fix
    assert "client's clock" in step.fix and "w32tm /resync" in step.fix
    assert ("The client's clock runs 1 hour behind, so the CRL's thisUpdate is in the "
            "client's future.") in step.explanation
    assert_all_ok(cases["client-clock-right"])


def test_cn_does_not_count_when_the_san_has_dns_names(cases: dict[str, ScenarioResult]) -> None:
    step = last(cases["cn-internet-san-intranet"])
    assert step.outcome == "fail" and step.error is codes.CERT_E_CN_NO_MATCH
    assert (f"The subject CN {INTERNET} does not count: when the SAN holds DNS names, Windows "
            "ignores the CN (reference §3.5)") in step.explanation, step.explanation
    assert_all_ok(cases["san-both"])


def test_a_certificate_without_client_authentication_is_named(
        cases: dict[str, ScenarioResult]) -> None:
    step = last(cases["server-auth-only"])
    assert step.outcome == "fail"
    assert "Client Authentication (1.3.6.1.5.5.7.3.2)" in step.fix, step.fix
    assert "lacks the Client Authentication EKU" in step.explanation, step.explanation
    assert_all_ok(cases["client-auth"])


# ------------------------------------------------------------------------------------------
# walks over every bundled scenario
# ------------------------------------------------------------------------------------------


def _all_steps(run: RunResult) -> list[tuple[str, StepResult]]:
    return [(f"{r.scenario.name}/{c.name}#{i}", s) for r in run.scenarios for c in r.clients
            for i, s in enumerate(c.steps)]


def test_no_trade_off_comes_before_a_restoring_fix(bundled: RunResult,
                                                   cases: dict[str, ScenarioResult]) -> None:
    walked = _all_steps(bundled) + [(n, s) for r in cases.values() for n, s in
                                    _all_steps(RunResult(scenarios=[r]))]
    trade_offs = 0
    for name, step in walked:
        if TRADE_OFF not in step.fix:
            continue
        trade_offs += 1
        first = step.fix.index(TRADE_OFF)
        assert first > 0, f"{name}: a trade-off is the first answer: {step.fix}"
        # after the first trade-off come only trade-offs: the fix ends with them
        tail = step.fix[first:]
        assert all(part == "" or part.startswith(" ") for part in tail.split(TRADE_OFF)[1:])
        assert not any(word in tail for word in ("Publish", "Republish", "Reissue")), name
    assert trade_offs >= 3  # the walk saw some: the site box, /NoCRLCheck


def test_fixes_are_ordered_in_one_place() -> None:
    trade = Fix(Rank.TRADE_OFF, "Clear the box.")
    publish = Fix(Rank.RESTORE, "Publish the CRL.")
    reissue = Fix(Rank.REISSUE, "Reissue the certificate.")
    assert render_fixes([trade, reissue, publish, trade]) == (
        f"Publish the CRL. Reissue the certificate. {TRADE_OFF} Clear the box.")
    assert "lowers security for every client" in TRADE_OFF


_SENTENCE = re.compile(r"(?<![A-Za-z]\.[a-z])[.!?] +([a-z][^ ]*)")
"""A sentence that starts in lower case after ". " (``e.g.``, ``i.e.`` excepted)."""


def _lower_starts(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`", "`code`", text)  # code in backticks is exempt
    return [m.group(0) for m in _SENTENCE.finditer(text)
            if not text[max(0, m.start() - 3):m.start() + 1].endswith(("e.g.", "i.e."))]


def test_no_sentence_starts_in_lower_case(bundled: RunResult,
                                          cases: dict[str, ScenarioResult]) -> None:
    walked = _all_steps(bundled) + [(n, s) for r in cases.values() for n, s in
                                    _all_steps(RunResult(scenarios=[r]))]
    bad = [(name, field, hit) for name, step in walked
           for field, text in (("explanation", step.explanation), ("fix", step.fix),
                               *(("note", n) for n in step.notes))
           for hit in _lower_starts(text)]
    assert bad == []


def test_the_code_messages_joined_with_their_detail_read_as_sentences(
        bundled: RunResult) -> None:
    bad = [(r.scenario.name, message) for r in bundled.scenarios for c in r.clients
           for step in c.steps if (message := (step_dict(step)["error"] or {}).get(
               "message", "")) and _lower_starts(message)]
    assert bad == []


def test_the_lower_case_rule_catches_what_it_should() -> None:
    assert _lower_starts("none learned from the site). the client is on the internet")
    assert not _lower_starts("e.g. over HTTP. The client")
    assert not _lower_starts("see `certutil -crl`. `ldap:///` is the first URL")
