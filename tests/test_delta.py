"""Delta CRLs as AD CS publishes them, every delta attempt in the outputs, and IIS's request
filtering refusing the delta CRL's ``+`` (reference §4.4, §8.4).

* the CRLs an enterprise CA publishes by default: a delta next to every LDAP and HTTP CDP
  location, the base CRL's Freshest CRL naming them, CA Version, Next CRL Publish, Published
  CRL Locations and the delta's critical Delta CRL Indicator; ``delta_cdp = []`` turns deltas
  off, a public CA has none;
* ``revocation.urls`` in the JSON (and the text report) lists the delta attempts with their
  simulated time;
* IIS with ``allowDoubleEscaping=false`` answers 404.11 to a ``+``: the W3C log says ``404 11``,
  the client is offline though the base CRL is good; the twin allows it and passes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from labtest import (
    HTTP_CDP,
    LDAP_CDP,
    PKI_CDP,
    PUBLIC_CDP,
    SCENARIOS,
    START,
    contoso,
    fabrikam,
    scenario_toml,
)

from lab.clock import Clock
from lab.errors import ScenarioError
from lab.logs.w3c import parse_w3c
from lab.logs.writer import write_logs
from lab.pki.build import (
    CA_VERSION_OID,
    NEXT_CRL_PUBLISH_OID,
    PUBLISHED_CRL_LOCATIONS_OID,
    BuiltPKI,
    build_pki,
)
from lab.pki.cache import PKICache
from lab.report.certutil import render_step_trace
from lab.report.jsonout import render_json
from lab.report.text import render_scenario
from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text
from lab.servers.cdp_app import double_escaped

DELTA_LDAP = LDAP_CDP.replace("?certificateRevocationList?", "?deltaRevocationList?")
DELTA_HTTP = HTTP_CDP.replace(".crl", "+.crl")
PKI_DELTA = PKI_CDP.replace(".crl", "+.crl")


def build(text: str, cache: PKICache) -> BuiltPKI:
    return build_pki(load_scenario_text(text, name="test-delta"), Clock(START), cache)


def ext_value(crl: x509.CertificateRevocationList, oid: x509.ObjectIdentifier) -> bytes:
    value = crl.extensions.get_extension_for_oid(oid).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def utctime(der: bytes) -> dt.datetime:
    assert der[0] == 0x17 and der[1] == len(der) - 2
    return dt.datetime.strptime(der[2:].decode(), "%y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)


def freshest(crl: x509.CertificateRevocationList) -> list[str]:
    ext = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    return [n.value for dp in ext for n in (dp.full_name or [])]


# ------------------------------------------------------------------------------------------
# What the CA publishes
# ------------------------------------------------------------------------------------------


def test_an_enterprise_ca_publishes_delta_crls_by_default(cache: PKICache) -> None:
    pki = build(scenario_toml(title="t"), cache)
    ca = pki.cas["Contoso-CA"]
    base, delta = ca.crl, ca.delta_crl
    assert delta is not None
    # the base CRL names a delta next to each CDP location, in CDP order
    assert ca.delta_urls == (DELTA_LDAP, DELTA_HTTP)
    assert freshest(base) == [DELTA_LDAP, DELTA_HTTP]
    assert not base.extensions.get_extension_for_class(x509.FreshestCRL).critical
    # both are published: the delta in the CDP object's deltaRevocationList and as CaName+.crl
    published = {p.url: p.data for p in pki.publications}
    delta_der = delta.public_bytes(Encoding.DER)
    assert published[DELTA_LDAP] == published[DELTA_HTTP] == delta_der
    assert published[LDAP_CDP] == published[HTTP_CDP] == ca.crl_der
    # the delta: critical Delta CRL Indicator with the base's number, a higher number of its
    # own, no Freshest CRL, a day's validity
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    base_number = base.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert indicator.critical and indicator.value.crl_number == base_number
    assert delta.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
        > base_number
    with pytest.raises(x509.ExtensionNotFound):
        delta.extensions.get_extension_for_class(x509.FreshestCRL)
    with pytest.raises(x509.ExtensionNotFound):
        base.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert delta.next_update_utc is not None and base.next_update_utc is not None
    assert delta.next_update_utc - delta.last_update_utc < dt.timedelta(days=2)


def test_adcs_crl_extensions(cache: PKICache) -> None:
    """CA Version V0.0, Next CRL Publish before nextUpdate, Published CRL Locations (the
    LDAP location), on the base and on the delta CRL; none of them critical."""
    ca = build(scenario_toml(title="t"), cache).cas["Contoso-CA"]
    assert ca.delta_crl is not None
    for crl, ldap in ((ca.crl, LDAP_CDP), (ca.delta_crl, DELTA_LDAP)):
        assert ext_value(crl, CA_VERSION_OID) == b"\x02\x01\x00"  # INTEGER 0: "V0.0"
        published = utctime(ext_value(crl, NEXT_CRL_PUBLISH_OID))
        assert crl.next_update_utc is not None
        assert crl.last_update_utc < published < crl.next_update_utc
        # the CA publishes again before nextUpdate: by the overlap, at most 12 hours
        assert dt.timedelta(0) < crl.next_update_utc - published <= dt.timedelta(hours=12)
        locations = x509.load_der_x509_crl(crl.public_bytes(
            Encoding.DER))  # round trip: the DER parses
        assert locations.extensions.get_extension_for_oid(PUBLISHED_CRL_LOCATIONS_OID)
        assert ldap.encode() in ext_value(crl, PUBLISHED_CRL_LOCATIONS_OID)
        assert not any(e.critical for e in crl.extensions
                       if e.oid != x509.oid.ExtensionOID.DELTA_CRL_INDICATOR)


def test_delta_cdp_empty_turns_deltas_off(cache: PKICache) -> None:
    pki = build(scenario_toml(title="t", cas=contoso("delta_cdp = []")), cache)
    ca = pki.cas["Contoso-CA"]
    assert (ca.delta_crl, ca.delta_urls) == (None, ())
    with pytest.raises(x509.ExtensionNotFound):
        ca.crl.extensions.get_extension_for_class(x509.FreshestCRL)
    assert not any("+" in p.url or "deltaRevocationList" in p.url for p in pki.publications)
    # the AD CS extensions stay: they do not depend on deltas
    assert ext_value(ca.crl, CA_VERSION_OID) == b"\x02\x01\x00"


def test_delta_locations_follow_the_cdp_list(cache: PKICache) -> None:
    """A full HTTP CDP URL gets its delta next to it; file:// gets none; an explicit
    delta_cdp is taken as written."""
    pki = build(scenario_toml(title="t", cas=contoso(
        f'cdp = ["{PKI_CDP}", "file://ca01.contoso.local/CertEnroll/Contoso-CA.crl", "ldap"]')),
        cache)
    assert pki.cas["Contoso-CA"].delta_urls == (PKI_DELTA, DELTA_LDAP)
    pki = build(scenario_toml(title="t", cas=contoso('delta_cdp = ["http"]')), cache)
    assert pki.cas["Contoso-CA"].delta_urls == (DELTA_HTTP,)


def test_a_public_ca_publishes_no_delta_and_no_adcs_extensions(cache: PKICache) -> None:
    text = scenario_toml(title="t", cas=contoso() + fabrikam(),
                         mp_cert='issuer = "Fabrikam Public CA"')
    ca = build(text, cache).cas["Fabrikam Public CA"]
    assert (ca.delta_crl, ca.delta_urls, ca.cdp_urls) == (None, (), (PUBLIC_CDP,))
    oids = {e.oid for e in ca.crl.extensions}
    assert not oids & {CA_VERSION_OID, NEXT_CRL_PUBLISH_OID, PUBLISHED_CRL_LOCATIONS_OID,
                       x509.oid.ExtensionOID.FRESHEST_CRL}


def test_the_iis_key_must_be_a_boolean() -> None:
    text = scenario_toml(title="t", cas=contoso('iis_allow_double_escaping = "no"'))
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(text, name="bad")
    assert "iis_allow_double_escaping" in str(err.value)
    assert "expected true or false" in str(err.value)
    assert err.value.exit_code == 2


# ------------------------------------------------------------------------------------------
# IIS's request filtering
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "refused"), [
    ("/CertEnroll/Contoso-CA+.crl", True),
    ("/CertEnroll/Contoso-CA%2B.crl", True),  # escaped, still a '+'
    ("/CertEnroll/Contoso%2541.crl", True),  # %25 41 -> %41 -> A: unescapes twice
    ("/CertEnroll/Contoso-CA.crl", False),
    ("/CertEnroll/Contoso%20Root%20CA.crl", False),  # one escaping is fine
])
def test_double_escaped(path: str, refused: bool) -> None:
    assert double_escaped(path) is refused


@pytest.fixture(scope="module")
def double_escaping(certs_dir: Path) -> RunResult:
    paths = [SCENARIOS / "server-delta-crl-double-escaping.toml",
             SCENARIOS / "server-delta-crl-double-escaping-allowed.toml",
             SCENARIOS / "server-delta-crl-unreachable.toml"]
    return asyncio.run(run_loaded(load_all(paths), certs=certs_dir))


def test_the_w3c_log_shows_404_11(double_escaping: RunResult, tmp_path: Path) -> None:
    write_logs(double_escaping, tmp_path)
    (log,) = (tmp_path / "server-delta-crl-double-escaping" / "pki").glob("u_ex*.log")
    entries = parse_w3c(log.read_text(encoding="utf-8"))
    lines = {(e["cs-uri-stem"], e["sc-status"], e["sc-substatus"]) for e in entries}
    assert lines == {("/CertEnroll/Contoso-CA.crl", "200", "0"),
                     ("/CertEnroll/Contoso-CA+.crl", "404", "11")}
    assert all(e["cs(User-Agent)"] == "Microsoft-CryptoAPI/10.0" for e in entries)
    assert " 404 11 " in log.read_text(encoding="utf-8")
    # the twin's web server allows double escaping: the delta CRL is served
    (twin,) = (tmp_path / "server-delta-crl-double-escaping-allowed" / "pki").glob("u_ex*.log")
    assert {(e["cs-uri-stem"], e["sc-status"], e["sc-substatus"])
            for e in parse_w3c(twin.read_text(encoding="utf-8"))} == {
        ("/CertEnroll/Contoso-CA.crl", "200", "0"), ("/CertEnroll/Contoso-CA+.crl", "200", "0")}


# ------------------------------------------------------------------------------------------
# Every URL CryptoAPI tried, in the outputs
# ------------------------------------------------------------------------------------------


def test_json_lists_every_delta_attempt_with_its_time(double_escaping: RunResult) -> None:
    payload = json.loads(render_json(double_escaping, as_list=True))
    by_name = {s["scenario"]: s for s in payload}
    # the delta CRL unreachable from the internet: 15 s spent on it, and the JSON says so
    step = by_name["server-delta-crl-unreachable"]["clients"][0]["steps"][-1]
    urls = step["revocation"]["urls"]
    assert [(u["url"], u["result"], u["simulated_ms"], u["crl"]) for u in urls] == [
        (PKI_CDP, "verified", 0, "base"), (DELTA_LDAP, "failed", 15000, "delta")]
    assert urls[1]["error"]["name"] == "ERROR_DS_SERVER_DOWN"
    assert urls[1]["certificate"] == "CN=IBCM-Intra.contoso.local"
    assert step["revocation"]["simulated_ms"] == sum(u["simulated_ms"] for u in urls) == 15000
    assert step["simulated_ms"] == 15000
    # the delta refused by IIS: its HTTP status, and the base CRL's number next to the delta's
    step = by_name["server-delta-crl-double-escaping"]["clients"][0]["steps"][-1]
    urls = step["revocation"]["urls"]
    assert [(u["url"], u["result"], u["crl"], u["http_status"]) for u in urls] == [
        (PKI_CDP, "verified", "base", None), (PKI_DELTA, "failed", "delta", 404)]
    assert isinstance(urls[0]["crl_number"], int) and urls[1]["crl_number"] is None
    good = by_name["server-delta-crl-double-escaping-allowed"]["clients"][0]["steps"][-1]
    numbers = [u["crl_number"] for u in good["revocation"]["urls"]]
    assert [u["crl"] for u in good["revocation"]["urls"]] == ["base", "delta"]
    assert numbers[1] > numbers[0]


def test_the_text_report_labels_delta_attempts(double_escaping: RunResult) -> None:
    text = render_scenario(double_escaping.scenarios[2])
    lines = [line.strip() for line in text.splitlines()]
    assert f"crl      verified      {PKI_CDP}" in lines
    assert (f"delta    failed        {DELTA_LDAP} [15 s] 0x8007203A ERROR_DS_SERVER_DOWN"
            in lines)


def test_the_trace_lists_the_refused_delta(double_escaping: RunResult) -> None:
    step = double_escaping.scenarios[0].clients[0].steps[-1]
    lines = render_step_trace(step).splitlines()
    at = lines.index("  ---------------- Base CRL CDP ----------------")
    assert lines[at + 1].startswith('  Lab: failed "Delta CRL" Time: 0')
    assert lines[at + 2].startswith("    Error retrieving URL: ")
    assert lines[at + 3].startswith("    Lab: the web server answered HTTP 404 (a '+' in the "
                                    "path: IIS request filtering refuses it with 404.11")
    assert lines[at + 4] == f"    [0.0] {PKI_DELTA}"
    # the base CRL above it, verified
    assert f"    [0.0] {PKI_CDP}" in lines[:at]
