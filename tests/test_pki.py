"""Tests for lab.pki: the certificates, CRLs and publications a scenario's PKI is built into.

Everything here is real: RSA keys (from the session cache), X.509 certificates and CRLs built
with ``cryptography``, parsed back and checked extension by extension. Every refusal has a
passing twin.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from labtest import (
    HTTP_AIA,
    HTTP_CDP,
    INTERNET,
    INTRA,
    LDAP_AIA,
    LDAP_CDP,
    PC01,
    PUBLIC_AIA,
    PUBLIC_CDP,
    START,
    client_table,
    contoso,
    fabrikam,
    scenario_toml,
    site_table,
)

from lab.clock import Clock
from lab.pki.build import CRL_VALIDITY, BuiltPKI, build_pki
from lab.pki.cache import KEY_SIZE, PKICache
from lab.pki.urls import cert_aia_urls, cert_cdp_urls
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import Scenario

PUBLIC_INTRA = "IBCM-Intra.corp.public.com"
"""An intranet FQDN under a public domain: what a public CA issues for (reference §3.7)."""
PUBLIC_MP = f'issuer = "Fabrikam Public CA"\nsan = ["{PUBLIC_INTRA}", "{INTERNET}"]'


def scenario_text(*, cas: str | None = None, mp_cert: str = 'issuer = "Contoso-CA"',
                  clients: str = PC01) -> str:
    return scenario_toml(title="test_pki", site=site_table(), cas=cas, mp_cert=mp_cert,
                         clients=clients)


def load(text: str) -> Scenario:
    return load_scenario_text(text, name="test-pki")


def build(text: str, cache: PKICache, clock: Clock | None = None) -> BuiltPKI:
    return build_pki(load(text), clock or Clock(START), cache)


@pytest.fixture(scope="module")
def default_pki(cache: PKICache) -> BuiltPKI:
    """Enterprise CA with AD CS default CDP/AIA, MP with both names, one client."""
    return build(scenario_text(), cache)


def ext(cert: x509.Certificate,
        cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


# ------------------------------------------------------------------------------------------
# CDP and AIA URLs
# ------------------------------------------------------------------------------------------


def test_enterprise_default_cdp_is_ldap_then_http_byte_exact(default_pki: BuiltPKI) -> None:
    assert default_pki.mp is not None
    cdp = ext(default_pki.mp.cert, x509.CRLDistributionPoints)
    assert cdp.critical is False
    points = list(cdp.value)
    # AD CS writes every URL into one distribution point's fullName, in configured order.
    assert len(points) == 1
    assert points[0].relative_name is None and points[0].reasons is None
    assert points[0].crl_issuer is None
    assert [n.value for n in points[0].full_name or []] == [LDAP_CDP, HTTP_CDP]
    der = cdp.value.public_bytes()
    assert der.index(LDAP_CDP.encode("ascii")) < der.index(HTTP_CDP.encode("ascii"))
    assert cert_cdp_urls(default_pki.mp.cert) == (LDAP_CDP, HTTP_CDP)
    assert default_pki.cas["Contoso-CA"].cdp_urls == (LDAP_CDP, HTTP_CDP)


def test_enterprise_default_aia_is_ldap_then_http_byte_exact(default_pki: BuiltPKI) -> None:
    assert default_pki.mp is not None
    aia = ext(default_pki.mp.cert, x509.AuthorityInformationAccess)
    assert aia.critical is False
    descriptions = list(aia.value)
    assert [d.access_method for d in descriptions] == [AuthorityInformationAccessOID.CA_ISSUERS] * 2
    assert [d.access_location.value for d in descriptions] == [LDAP_AIA, HTTP_AIA]
    der = aia.value.public_bytes()
    assert der.index(LDAP_AIA.encode("ascii")) < der.index(HTTP_AIA.encode("ascii"))
    assert cert_aia_urls(default_pki.mp.cert) == (LDAP_AIA, HTTP_AIA)


def test_client_cert_carries_the_same_cdp_and_aia(default_pki: BuiltPKI) -> None:
    client = default_pki.clients["PC01"].cert
    assert cert_cdp_urls(client) == (LDAP_CDP, HTTP_CDP)
    assert cert_aia_urls(client) == (LDAP_AIA, HTTP_AIA)


def test_ca_name_with_spaces_is_percent_encoded(cache: PKICache) -> None:
    name = "Contoso Issuing CA"
    pki = build(scenario_text(cas=contoso(name=name), mp_cert=f'issuer = "{name}"'), cache)
    assert pki.mp is not None
    assert cert_cdp_urls(pki.mp.cert) == (
        "ldap:///CN=Contoso%20Issuing%20CA,CN=ca01,CN=CDP,CN=Public%20Key%20Services,"
        "CN=Services,CN=Configuration,DC=contoso,DC=local?certificateRevocationList?base?"
        "objectClass=cRLDistributionPoint",
        "http://ca01.contoso.local/CertEnroll/Contoso%20Issuing%20CA.crl",
    )
    assert cert_aia_urls(pki.mp.cert) == (
        "ldap:///CN=Contoso%20Issuing%20CA,CN=AIA,CN=Public%20Key%20Services,CN=Services,"
        "CN=Configuration,DC=contoso,DC=local?cACertificate?base?"
        "objectClass=certificationAuthority",
        "http://ca01.contoso.local/CertEnroll/ca01.contoso.local_Contoso%20Issuing%20CA.crt",
    )
    # The CA's subject keeps the real name (with spaces) and the AD domain components.
    ca = pki.cas[name].cert
    assert ca.subject.rfc4514_string() == "CN=Contoso Issuing CA,DC=contoso,DC=local"
    assert all(" " not in p.url for p in pki.publications)


def test_public_ca_writes_http_urls_on_its_host(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam(), mp_cert=PUBLIC_MP), cache)
    assert pki.mp is not None
    assert cert_cdp_urls(pki.mp.cert) == (PUBLIC_CDP,)
    assert cert_aia_urls(pki.mp.cert) == (PUBLIC_AIA,)
    assert pki.mp.cert.issuer.rfc4514_string() == "CN=Fabrikam Public CA,O=Fabrikam Public CA"
    # Twin: the client certificate still comes from the enterprise CA, with its LDAP URLs.
    assert pki.clients["PC01"].issuer == "Contoso-CA"
    assert cert_cdp_urls(pki.clients["PC01"].cert) == (LDAP_CDP, HTTP_CDP)


def test_explicit_ca_cdp_list_keeps_order_and_full_urls(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso(
        'cdp = ["http", "http://pki.contoso.com/CertEnroll/Contoso-CA.crl", "ldap"]\n'
        'aia = ["http"]')), cache)
    assert pki.mp is not None
    expected = (HTTP_CDP, "http://pki.contoso.com/CertEnroll/Contoso-CA.crl", LDAP_CDP)
    assert cert_cdp_urls(pki.mp.cert) == expected
    assert cert_cdp_urls(pki.clients["PC01"].cert) == expected
    assert cert_aia_urls(pki.mp.cert) == (HTTP_AIA,)


def test_ca_cdp_empty_list_means_no_cdp_extension(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso("cdp = []\naia = []")), cache)
    assert pki.mp is not None
    for cert in (pki.mp.cert, pki.clients["PC01"].cert):
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, x509.CRLDistributionPoints)
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, x509.AuthorityInformationAccess)
    assert pki.publications == ()
    # The CA still signs a CRL; it is just not published anywhere.
    assert pki.cas["Contoso-CA"].crl_der


def test_leaf_cdp_list_overrides_the_ca_and_is_published(cache: PKICache) -> None:
    pki = build(scenario_text(mp_cert='issuer = "Contoso-CA"\n'
                                      'cdp = ["http://crl.example.net/mp.crl", "ldap"]'), cache)
    assert pki.mp is not None
    assert cert_cdp_urls(pki.mp.cert) == ("http://crl.example.net/mp.crl", LDAP_CDP)
    # Twin: the client keeps the CA's list.
    assert cert_cdp_urls(pki.clients["PC01"].cert) == (LDAP_CDP, HTTP_CDP)
    extra = [p for p in pki.publications if p.url == "http://crl.example.net/mp.crl"]
    assert len(extra) == 1
    assert (extra[0].kind, extra[0].ca) == ("crl", "Contoso-CA")
    assert extra[0].data == pki.cas["Contoso-CA"].crl_der


def test_leaf_cdp_empty_list_means_no_cdp_extension(cache: PKICache) -> None:
    pki = build(scenario_text(mp_cert='issuer = "Contoso-CA"\ncdp = []'), cache)
    assert pki.mp is not None
    with pytest.raises(x509.ExtensionNotFound):
        ext(pki.mp.cert, x509.CRLDistributionPoints)
    assert cert_cdp_urls(pki.mp.cert) == ()
    # Twin: AIA is the CA's and stays; the client still has its CDP.
    assert cert_aia_urls(pki.mp.cert) == (LDAP_AIA, HTTP_AIA)
    assert cert_cdp_urls(pki.clients["PC01"].cert) == (LDAP_CDP, HTTP_CDP)


# ------------------------------------------------------------------------------------------
# Subjects, SANs, usages
# ------------------------------------------------------------------------------------------


def test_mp_cert_san_eku_and_key_usage(default_pki: BuiltPKI) -> None:
    mp = default_pki.mp
    assert mp is not None and mp.label == "mp" and mp.issuer == "Contoso-CA"
    cert = mp.cert
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == INTRA
    assert cert.issuer == default_pki.cas["Contoso-CA"].cert.subject
    san = ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == [INTRA, INTERNET]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku_ext = ext(cert, x509.KeyUsage)
    ku = ku_ext.value
    assert ku_ext.critical is True
    assert ku.digital_signature and ku.key_encipherment
    assert not ku.key_cert_sign and not ku.crl_sign
    # AD CS templates write no Basic Constraints into end-entity certificates (reference §3.3c).
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.BasicConstraints)
    assert mp.thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()


def test_ca_cert_is_a_self_signed_crl_signing_ca(default_pki: BuiltPKI) -> None:
    ca = default_pki.cas["Contoso-CA"].cert
    assert ca.subject == ca.issuer
    assert ca.subject.rfc4514_string() == "CN=Contoso-CA,DC=contoso,DC=local"
    assert ext(ca, x509.BasicConstraints).value.ca is True
    ku = ext(ca, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    ca.verify_directly_issued_by(ca)
    assert default_pki.mp is not None
    default_pki.mp.cert.verify_directly_issued_by(ca)


def test_client_cert_subject_is_fqdn_with_client_auth(default_pki: BuiltPKI) -> None:
    issued = default_pki.clients["PC01"]
    cert = issued.cert
    assert issued.label == "client:PC01:0" and issued.issuer == "Contoso-CA"
    assert default_pki.stores["PC01"] == (issued,)
    # Workstation Authentication: subject name format None, the DNS name in the SAN only,
    # which RFC 5280 then wants critical.
    assert cert.subject.rfc4514_string() == ""
    san_ext = ext(cert, x509.SubjectAlternativeName)
    assert san_ext.value.get_values_for_type(x509.DNSName) == ["PC01.contoso.local"]
    assert san_ext.critical is True
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_client_without_cert_and_explicit_fqdn(cache: PKICache) -> None:
    clients = PC01 + """
[[client]]
name = "WG01"
domain_joined = false
fqdn = "wg01.fabrikam.example"
ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local"
[[client.step]]
action = "install"
location = "intranet"

[[client]]
name = "PC03"
cert = false
ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local"
[[client.step]]
action = "install"
location = "intranet"
"""
    pki = build(scenario_text(clients=clients), cache)
    assert sorted(pki.clients) == ["PC01", "WG01"]
    wg01 = pki.clients["WG01"].cert
    assert wg01.subject.rfc4514_string() == ""
    assert ext(wg01, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["wg01.fabrikam.example"]


def _template_info(cert: x509.Certificate) -> tuple[str, int, int]:
    """Certificate Template Information (1.3.6.1.4.1.311.21.7) as cryptography parses it."""
    found = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.311.21.7"))
    value = found.value
    assert isinstance(value, x509.MSCertificateTemplate)
    assert value.major_version is not None and value.minor_version is not None
    return value.template_id.dotted_string, value.major_version, value.minor_version


def _application_policies(cert: x509.Certificate) -> list[str]:
    raw = cert.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.3.6.1.4.1.311.21.10")).value
    assert isinstance(raw, x509.UnrecognizedExtension)
    from pyasn1.codec.der import decoder

    seq, _ = decoder.decode(raw.value)
    return [str(info[0]) for info in seq]


def test_enterprise_certs_carry_template_information_and_application_policies(
        default_pki: BuiltPKI) -> None:
    assert default_pki.mp is not None
    mp, client = default_pki.mp.cert, default_pki.clients["PC01"].cert
    mp_oid, major, minor = _template_info(mp)
    client_oid, _, _ = _template_info(client)
    # A duplicated template's OID lies under the forest's 1.3.6.1.4.1.311.21.8 arc; the two
    # templates differ only in their last arc.
    assert mp_oid.startswith("1.3.6.1.4.1.311.21.8.") and client_oid.startswith(
        "1.3.6.1.4.1.311.21.8.")
    assert mp_oid.rsplit(".", 1)[0] == client_oid.rsplit(".", 1)[0] and mp_oid != client_oid
    assert major >= 100 and minor >= 0
    assert _application_policies(mp) == ["1.3.6.1.5.5.7.3.1"]
    assert _application_policies(client) == ["1.3.6.1.5.5.7.3.2"]
    for cert in (mp, client):
        assert not cert.extensions.get_extension_for_oid(
            x509.ObjectIdentifier("1.3.6.1.4.1.311.21.7")).critical


@pytest.mark.parametrize("extra", ["", "CCMCERTSEL=SubjectStr:pc01",
                                   "CCMCERTSEL=Subject:PC01.contoso.local"])
def test_client_selection_finds_the_workstation_authentication_certificate(
        default_pki: BuiltPKI, extra: str) -> None:
    # The subject is empty: the computer name and CCMCERTSEL match on the SAN (reference §3.4).
    from lab.client.certselect import select_certificate
    from lab.configmgr.ccmsetup import parse_ccmsetup

    store = default_pki.stores["PC01"]
    command = parse_ccmsetup(f"ccmsetup.exe /UsePKICert SMSSITECODE=P01 {extra}".strip())
    got = select_certificate(store, command, "PC01.contoso.local", START)
    assert (got.cert, got.error) == (store[0], None)


def test_leaf_not_before_is_ten_minutes_back_as_ad_cs_does(tmp_path: Path) -> None:
    pki = build(scenario_text(), PKICache(tmp_path / "fresh"))
    assert pki.mp is not None
    for cert in (pki.mp.cert, pki.clients["PC01"].cert):
        assert START - cert.not_valid_before_utc == dt.timedelta(minutes=10)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)


def test_public_ca_leaf_has_basic_constraints_and_no_template(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam(), mp_cert=(
        'issuer = "Fabrikam Public CA"\nsan = ["IBCM-Internet.public.com"]')), cache)
    assert pki.mp is not None
    public = pki.mp.cert
    bc = ext(public, x509.BasicConstraints)
    assert bc.critical is True and bc.value.ca is False
    oids = {e.oid.dotted_string for e in public.extensions}
    assert "1.3.6.1.4.1.311.21.7" not in oids and "1.3.6.1.4.1.311.21.10" not in oids
    assert public.subject.rfc4514_string() == "CN=IBCM-Internet.public.com"


def test_mp_eku_client_auth_only(cache: PKICache) -> None:
    pki = build(scenario_text(mp_cert='issuer = "Contoso-CA"\neku = ["client_auth"]'), cache)
    assert pki.mp is not None
    ekus = list(ext(pki.mp.cert, x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ExtendedKeyUsageOID.SERVER_AUTH not in ekus


# ------------------------------------------------------------------------------------------
# CRLs
# ------------------------------------------------------------------------------------------


def test_revoked_serial_is_on_the_crl_and_good_one_is_not(cache: PKICache) -> None:
    revoked = build(scenario_text(mp_cert='issuer = "Contoso-CA"\nrevoked = true'), cache)
    good = build(scenario_text(), cache)
    assert revoked.mp is not None and good.mp is not None
    # "revoked" does not change the certificate, only the CA's CRL.
    assert revoked.mp.cert.serial_number == good.mp.cert.serial_number
    assert revoked.mp.revoked is True and good.mp.revoked is False

    crl = revoked.cas["Contoso-CA"].crl
    entry = crl.get_revoked_certificate_by_serial_number(revoked.mp.cert.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert [r.serial_number for r in crl] == [revoked.mp.cert.serial_number]
    client_serial = revoked.clients["PC01"].cert.serial_number
    assert crl.get_revoked_certificate_by_serial_number(client_serial) is None

    good_crl = good.cas["Contoso-CA"].crl
    assert good_crl.get_revoked_certificate_by_serial_number(good.mp.cert.serial_number) is None
    assert len(good_crl) == 0


def test_revoked_client_goes_on_its_own_issuers_crl(cache: PKICache) -> None:
    clients = PC01.replace('location = "intranet"\n', 'location = "intranet"\n\n'
                           '[client.cert]\nissuer = "Contoso-CA"\nrevoked = true\n', 1)
    pki = build(scenario_text(cas=contoso() + fabrikam(), mp_cert=PUBLIC_MP, clients=clients),
                cache)
    assert pki.mp is not None
    serial = pki.clients["PC01"].cert.serial_number
    assert pki.cas["Contoso-CA"].crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert len(pki.cas["Fabrikam Public CA"].crl) == 0


def test_crl_times_come_from_the_clock(cache: PKICache) -> None:
    clock = Clock(START)
    pki = build(scenario_text(), cache, clock)
    ca = pki.cas["Contoso-CA"]
    crl = ca.crl
    assert pki.built_at == START
    assert crl.last_update_utc == START - dt.timedelta(minutes=10)
    # AD CS's default base CRL period (one week) and overlap (10 %, at most 12 hours).
    assert crl.next_update_utc == START + dt.timedelta(days=7, hours=12)
    assert crl.issuer == ca.cert.subject
    public_key = ca.cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert crl.is_signature_valid(public_key)
    assert x509.load_der_x509_crl(ca.crl_der) == crl

    # The clock moves: the next build signs a CRL for the new time (certificates stay).
    clock.advance(90 * 60 * 1000)
    later = build(scenario_text(), cache, clock)
    assert later.cas["Contoso-CA"].crl.last_update_utc == START + dt.timedelta(minutes=80)
    later_next = later.cas["Contoso-CA"].crl.next_update_utc
    assert later_next == START + dt.timedelta(minutes=90, hours=12) + CRL_VALIDITY
    assert later.mp is not None and pki.mp is not None
    assert later.mp.der == pki.mp.der


# ------------------------------------------------------------------------------------------
# Public CA plan limit
# ------------------------------------------------------------------------------------------


def test_public_ca_name_limit_refuses_the_mp_cert(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam("max_names = 1"), mp_cert=PUBLIC_MP),
                cache)
    assert pki.mp is None
    refusal = pki.mp_refusal
    assert refusal is not None
    assert (refusal.label, refusal.ca, refusal.limit) == ("mp", "Fabrikam Public CA", 1)
    assert refusal.requested == (PUBLIC_INTRA, INTERNET)
    assert refusal.code.name == "LAB_CA_PLAN_NAME_LIMIT"
    assert refusal.message == (
        "Fabrikam Public CA refused the request: its plan allows 1 subject name per "
        "certificate, the request asked for 2 (IBCM-Intra.corp.public.com, "
        "IBCM-Internet.public.com)")
    # Nothing was published for a certificate that does not exist, but the CA still is.
    assert [p.url for p in pki.publications if p.ca == "Fabrikam Public CA"] == [
        PUBLIC_CDP, PUBLIC_AIA]
    assert "PC01" in pki.clients


def test_public_ca_name_limit_twin_two_names_issue(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam("max_names = 2"), mp_cert=PUBLIC_MP),
                cache)
    assert pki.mp_refusal is None
    assert pki.mp is not None
    san = ext(pki.mp.cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == [PUBLIC_INTRA, INTERNET]


def test_public_ca_refuses_internal_names(cache: PKICache) -> None:
    # The CA/Browser Forum's Baseline Requirements: no public CA issues for .local names.
    pki = build(scenario_text(cas=contoso() + fabrikam("max_names = 2"),
                              mp_cert='issuer = "Fabrikam Public CA"'), cache)
    assert pki.mp is None
    refusal = pki.mp_refusal
    assert refusal is not None and refusal.internal == (INTRA,)
    assert refusal.code.name == "LAB_CA_INTERNAL_NAME"
    assert refusal.message.startswith(
        "Fabrikam Public CA refused the request: IBCM-Intra.contoso.local is an internal name")
    assert "1 November 2015" in refusal.message and "enterprise CA" in refusal.message
    # Twin: the enterprise CA issues for the same names.
    assert build(scenario_text(), cache).mp is not None


def test_public_ca_name_limit_single_name_twin(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam("max_names = 1"),
                              mp_cert=f'issuer = "Fabrikam Public CA"\nsan = ["{INTERNET}"]'),
                cache)
    assert pki.mp_refusal is None
    assert pki.mp is not None
    assert pki.mp.cert.subject.rfc4514_string() == f"CN={INTERNET}"


# ------------------------------------------------------------------------------------------
# The cache
# ------------------------------------------------------------------------------------------


@pytest.fixture
def private_cache_dir(certs_dir: Path, cache: PKICache, tmp_path: Path) -> Path:
    """A cache folder of its own holding the session's keys (so no key is generated) but no
    certificates (so the counts below start from nothing)."""
    build(scenario_text(), cache)  # the keys of the default scenario exist in the session cache
    target = tmp_path / "certs"
    target.mkdir()
    shutil.copytree(certs_dir / "keys", target / "keys")
    return target


def serials(pki: BuiltPKI) -> tuple[int, int, int]:
    assert pki.mp is not None
    return (pki.cas["Contoso-CA"].cert.serial_number, pki.mp.cert.serial_number,
            pki.clients["PC01"].cert.serial_number)


def test_cache_second_build_generates_and_issues_nothing(private_cache_dir: Path) -> None:
    first = build(scenario_text(), PKICache(private_cache_dir))
    assert dict(first.stats) == {"keys_generated": 0, "certs_issued": 3}
    second = build(scenario_text(), PKICache(private_cache_dir))
    assert dict(second.stats) == {"keys_generated": 0, "certs_issued": 0}
    assert serials(second) == serials(first)
    assert second.cas["Contoso-CA"].cert_der == first.cas["Contoso-CA"].cert_der
    assert first.mp is not None and second.mp is not None
    assert second.mp.der == first.mp.der


def test_cache_reissues_explicitly_dated_certs_whose_dates_have_drifted(
        private_cache_dir: Path) -> None:
    # "expired an hour ago", replayed two hours later on a warm cache: the certificate issued
    # then expired three hours before the second build, so a client whose clock is two hours
    # behind would not see it as valid (bundled client-cert-expired-clock-behind).
    expired = client_table(cert='[client.cert]\nnot_before = "-366d"\nnot_after = "-1h"')
    text = scenario_text(clients=expired)
    first = build(text, PKICache(private_cache_dir), Clock(START))
    later = START + dt.timedelta(hours=2)
    second = build(text, PKICache(private_cache_dir), Clock(later))
    assert dict(second.stats) == {"keys_generated": 0, "certs_issued": 1}
    assert first.clients["PC01"].cert.not_valid_after_utc == START - dt.timedelta(hours=1)
    assert second.clients["PC01"].cert.not_valid_after_utc == later - dt.timedelta(hours=1)
    # Its twin: the same build a few seconds later reuses the certificate.
    third = build(text, PKICache(private_cache_dir), Clock(later + dt.timedelta(seconds=5)))
    assert dict(third.stats) == {"keys_generated": 0, "certs_issued": 0}
    assert third.clients["PC01"].cert == second.clients["PC01"].cert


def test_cache_changing_mp_san_reissues_only_the_mp_cert(private_cache_dir: Path) -> None:
    first = build(scenario_text(), PKICache(private_cache_dir))
    changed = build(scenario_text(mp_cert=f'issuer = "Contoso-CA"\nsan = ["{INTERNET}"]'),
                    PKICache(private_cache_dir))
    assert dict(changed.stats) == {"keys_generated": 0, "certs_issued": 1}
    ca0, mp0, client0 = serials(first)
    ca1, mp1, client1 = serials(changed)
    assert (ca1, client1) == (ca0, client0)
    assert mp1 != mp0
    assert changed.mp is not None and first.mp is not None
    assert changed.mp.key_path == first.mp.key_path  # same key, new certificate
    assert changed.mp.cert.public_key() == first.mp.cert.public_key()
    san = ext(changed.mp.cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == [INTERNET]


def test_key_files_are_0600_and_keys_folder_0700(certs_dir: Path, default_pki: BuiltPKI) -> None:
    keys = certs_dir / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    files = sorted(keys.glob("*.key.pem"))
    assert default_pki.mp is not None and default_pki.mp.key_path in files
    assert default_pki.clients["PC01"].key_path in files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    # Certificates and chains are public material: never in the keys folder.
    assert default_pki.mp.cert_path.parent == certs_dir / "certs"
    assert default_pki.mp.chain_path.parent == certs_dir / "public"
    assert b"PRIVATE KEY" not in default_pki.mp.chain_path.read_bytes()


def test_cache_tightens_loose_permissions(private_cache_dir: Path) -> None:
    first = build(scenario_text(), PKICache(private_cache_dir))
    assert first.mp is not None
    os.chmod(private_cache_dir / "keys", 0o755)
    os.chmod(first.mp.key_path, 0o644)
    again = build(scenario_text(), PKICache(private_cache_dir))
    assert dict(again.stats) == {"keys_generated": 0, "certs_issued": 0}
    assert stat.S_IMODE((private_cache_dir / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(first.mp.key_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", [b"not a key at all\n", b"-----BEGIN PRIVATE KEY-----\nMIIE"],
                         ids=["garbage", "half-written"])
def test_damaged_key_file_is_regenerated(private_cache_dir: Path, damage: bytes) -> None:
    first = build(scenario_text(), PKICache(private_cache_dir))
    assert first.mp is not None
    first.mp.key_path.write_bytes(damage)
    again = build(scenario_text(), PKICache(private_cache_dir))
    # One new key (the MP's), and the MP certificate re-issued for it; nothing else.
    assert dict(again.stats) == {"keys_generated": 1, "certs_issued": 1}
    assert again.mp is not None
    key = serialization.load_pem_private_key(again.mp.key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == KEY_SIZE
    assert key.public_key() == again.mp.cert.public_key()
    assert again.mp.cert.public_key() != first.mp.cert.public_key()
    assert stat.S_IMODE(again.mp.key_path.stat().st_mode) == 0o600
    ca0, _, client0 = serials(first)
    ca1, _, client1 = serials(again)
    assert (ca1, client1) == (ca0, client0)


# ------------------------------------------------------------------------------------------
# Publications
# ------------------------------------------------------------------------------------------


def test_publications_list_each_crl_and_ca_cert_at_each_url(cache: PKICache) -> None:
    pki = build(scenario_text(cas=contoso() + fabrikam(), mp_cert=PUBLIC_MP), cache)
    contoso_ca = pki.cas["Contoso-CA"]
    fabrikam_ca = pki.cas["Fabrikam Public CA"]
    delta_ldap = LDAP_CDP.replace("?certificateRevocationList?", "?deltaRevocationList?")
    delta_http = HTTP_CDP.replace(".crl", "+.crl")
    assert [(p.url, p.kind, p.ca) for p in pki.publications] == [
        (LDAP_CDP, "crl", "Contoso-CA"),
        (HTTP_CDP, "crl", "Contoso-CA"),
        (delta_ldap, "crl", "Contoso-CA"),  # AD CS publishes delta CRLs by default
        (delta_http, "crl", "Contoso-CA"),
        (LDAP_AIA, "cacert", "Contoso-CA"),
        (HTTP_AIA, "cacert", "Contoso-CA"),
        (PUBLIC_CDP, "crl", "Fabrikam Public CA"),
        (PUBLIC_AIA, "cacert", "Fabrikam Public CA"),
    ]
    by_url = {p.url: p for p in pki.publications}
    for url in (LDAP_CDP, HTTP_CDP):
        assert by_url[url].data == contoso_ca.crl_der
        assert by_url[url].content_type == "application/pkix-crl"
    for url in (LDAP_AIA, HTTP_AIA):
        assert by_url[url].data == contoso_ca.cert_der
        assert by_url[url].content_type == "application/pkix-cert"
    assert contoso_ca.delta_crl is not None
    for url in (delta_ldap, delta_http):
        assert by_url[url].data == contoso_ca.delta_crl.public_bytes(serialization.Encoding.DER)
    assert by_url[PUBLIC_CDP].data == fabrikam_ca.crl_der
    assert by_url[PUBLIC_AIA].data == fabrikam_ca.cert_der
    assert x509.load_der_x509_crl(by_url[PUBLIC_CDP].data).issuer == fabrikam_ca.cert.subject
    assert not any(b"PRIVATE KEY" in p.data for p in pki.publications)


def two_enterprise_cas(first: str, second: str) -> str:
    return scenario_text(cas=contoso(name=first) + contoso(name=second),
                         mp_cert=f'issuer = "{first}"')


def test_two_cas_on_one_host_have_their_own_keys(cache: PKICache) -> None:
    pki = build(two_enterprise_cas("Contoso CA", "Contoso CA2"), cache)
    one, two = pki.cas["Contoso CA"], pki.cas["Contoso CA2"]
    assert one.cert.public_key() != two.cert.public_key()


def test_ca_names_differing_only_in_space_vs_underscore_get_different_keys(
        cache: PKICache) -> None:
    pki = build(two_enterprise_cas("Contoso CA", "Contoso_CA"), cache)
    one, two = pki.cas["Contoso CA"], pki.cas["Contoso_CA"]
    assert one.cert.subject != two.cert.subject
    assert one.cert.public_key() != two.cert.public_key()
