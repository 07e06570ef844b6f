"""Tests for lab.scenario.loader: bundled scenarios, defaults, and every kind of bad input.

Every rejected document has a passing twin (the same document with the defect repaired), so a
green run shows that each check fires on the defect and only on it. Errors are checked field
by field (``.file``, ``.line``, ``.key``, message) and in their one-line string form.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from labtest import (
    CCMSETUP,
    INTERNET,
    ROOT,
    client_table,
    contoso,
    fabrikam,
    mp_table,
    site_table,
)

from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.errors import CcmsetupSyntaxError, LabError, ScenarioError
from lab.scenario.loader import discover, load_all, load_scenario, load_scenario_text
from lab.scenario.model import EKU, Action, CAKind, CertSpec, Scenario, Site, Zone

BUNDLED = sorted((ROOT / "scenarios").glob("*.toml"))

STEPS = """
[[client.step]]
action = "install"
location = "intranet"
expect = "ok"

[[client.step]]
action = "register"
location = "vpn"
expect = "CRYPT_E_REVOCATION_OFFLINE"
"""

# A small valid scenario the cases below mutate. Both CA kinds, a domain-joined client with
# two steps; every value the mutations touch occurs exactly once unless noted.
BASE = (
    "[scenario]\n"
    'title = "Loader test"\n'
    'description = "A small scenario the loader tests mutate."\n'
    "\n"
    + site_table()  # lines 5-7: [site], code = "P01", check_crl = true
    + contoso()  # Contoso-CA, enterprise, on ca01.contoso.local, domain contoso.local
    + fabrikam()  # Fabrikam Public CA, public, on crl.fabrikam-trust.example
    + mp_table()  # both FQDNs; [mp.cert] issuer = "Contoso-CA"
    + "[[client]]\n"
    'name = "PC01"\n'
    f'ccmsetup = "{CCMSETUP}"\n'  # line 29
    + STEPS
)

# The same site with a public CA only: clients must be workgroup machines.
PUBLIC_ONLY = (
    "[scenario]\n"
    'title = "Public CA only"\n'
    "\n"
    + fabrikam()
    + mp_table('issuer = "Fabrikam Public CA"')
    + "[[client]]\n"
    'name = "PC01"\n'
    "domain_joined = true\n"
    f'ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 CCMHOSTNAME={INTERNET}"\n'
    "\n"
    "[[client.step]]\n"
    'action = "install"\n'
    'location = "intranet"\n'
)


def second_client(name: str, location: str) -> str:
    """A second ``[[client]]``, without SMSMP, with one install step at ``location``."""
    return client_table(name, location=location,
                        ccmsetup="ccmsetup.exe /UsePKICert SMSSITECODE=P01")


def mutate(text: str, old: str, new: str) -> str:
    """``text`` with its only occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based number of the ``nth`` line that holds ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) > nth, f"{needle!r} found on lines {hits}"
    return hits[nth]


def load(text: str) -> Scenario:
    return load_scenario_text(text, file="x.toml")


def load_fails(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load(text)
    return info.value


# ------------------------------------------------------------------------------------------
# Bundled scenarios
# ------------------------------------------------------------------------------------------


def test_bundled_scenarios_are_there() -> None:
    assert len(BUNDLED) >= 16
    assert ROOT / "scenarios" / "seed4-internet-client-ldap-cdp-crl-on.toml" in BUNDLED


@pytest.mark.parametrize("path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_scenario_loads(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem
    assert s.file == str(path)
    assert s.info.title.strip()
    assert s.info.source.startswith(("seed §", "failure catalogue", "fault knobs"))
    assert s.cas and s.clients
    assert all(c.steps for c in s.clients)
    assert s.mp.cert.issuer in {ca.name for ca in s.cas}
    assert s.mp.cert.san, "every bundled MP certificate names at least one host"


def test_bundled_folder_loads_in_sorted_order_with_unique_names() -> None:
    scenarios = load_all([ROOT / "scenarios"])
    assert [s.name for s in scenarios] == [p.stem for p in BUNDLED]


def test_seed4_crl_on_scenario_reads_every_value() -> None:
    s = load_scenario(ROOT / "scenarios" / "seed4-internet-client-ldap-cdp-crl-on.toml")
    assert s.site == Site(code="P01", check_crl=True, https_only=True, trusted_roots=None)
    (ca,) = s.cas
    assert (ca.name, ca.kind, ca.host, ca.domain) == (
        "Contoso-CA", CAKind.ENTERPRISE, "ca01.contoso.local", "contoso.local")
    assert ca.cdp is None and ca.aia is None and ca.max_names is None
    assert s.mp.cert == CertSpec(
        issuer="Contoso-CA", san=("IBCM-Intra.contoso.local", "IBCM-Internet.public.com"))
    (client,) = s.clients
    assert client.ccmsetup.use_pki_cert and client.ccmsetup.no_crl_check
    assert client.ccmsetup.ccmhostname == "IBCM-Internet.public.com"
    assert [(st.action, st.location, st.expect) for st in client.steps] == [
        (Action.INSTALL, Zone.INTRANET, "ok"),
        (Action.INVENTORY, Zone.INTERNET, "CRYPT_E_REVOCATION_OFFLINE"),
    ]


# ------------------------------------------------------------------------------------------
# Defaults
# ------------------------------------------------------------------------------------------


def test_base_document_loads() -> None:
    s = load(BASE)
    assert s.name == "x"
    assert s.file == "x.toml"
    assert s.info.title == "Loader test"
    assert s.info.source == ""
    assert [ca.name for ca in s.cas] == ["Contoso-CA", "Fabrikam Public CA"]
    assert s.ad_domain == "contoso.local"


def test_name_comes_from_the_file_stem_or_the_argument() -> None:
    assert load_scenario_text(BASE).name == "scenario"
    assert load_scenario_text(BASE).file is None
    assert load_scenario_text(BASE, file="dir/my-case.toml").name == "my-case"
    assert load_scenario_text(BASE, file="dir/my-case.toml", name="other").name == "other"


def test_site_defaults_without_a_site_table() -> None:
    s = load(mutate(BASE, '[site]\ncode = "P01"\ncheck_crl = true\n', ""))
    assert s.site == Site(code="P01", check_crl=True, https_only=True, trusted_roots=None)


def test_site_values_override_the_defaults() -> None:
    s = load(mutate(BASE, 'code = "P01"\ncheck_crl = true',
                    'code = "x9z"\ncheck_crl = false\nhttps_only = false\n'
                    'trusted_roots = ["Fabrikam Public CA"]'))
    assert s.site == Site(code="X9Z", check_crl=False, https_only=False,
                          trusted_roots=("Fabrikam Public CA",))


def test_site_table_with_one_key_keeps_the_other_defaults() -> None:
    s = load(mutate(BASE, 'code = "P01"\ncheck_crl = true', "https_only = false"))
    assert s.site == Site(code="P01", check_crl=True, https_only=False)


def test_mp_cert_san_defaults_to_both_fqdns() -> None:
    s = load(BASE)
    assert s.mp.intranet_fqdn == "IBCM-Intra.contoso.local"
    assert s.mp.internet_fqdn == "IBCM-Internet.public.com"
    assert s.mp.cert == CertSpec(
        issuer="Contoso-CA", san=("IBCM-Intra.contoso.local", "IBCM-Internet.public.com"),
        revoked=False, eku=None, cdp=None)


def test_mp_cert_san_defaults_to_the_intranet_fqdn_without_an_internet_mp() -> None:
    s = load(mutate(BASE, 'internet_fqdn = "IBCM-Internet.public.com"\n', ""))
    assert s.mp.internet_fqdn is None
    assert s.mp.cert.san == ("IBCM-Intra.contoso.local",)


def test_mp_cert_explicit_values_win() -> None:
    s = load(mutate(BASE, 'issuer = "Contoso-CA"\n',
                    'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local"]\n'
                    'eku = ["server_auth", "CLIENT_AUTH"]\nrevoked = true\ncdp = ["HTTP"]\n'))
    assert s.mp.cert == CertSpec(issuer="Contoso-CA", san=("IBCM-Intra.contoso.local",),
                                 revoked=True, eku=(EKU.SERVER_AUTH, EKU.CLIENT_AUTH),
                                 cdp=("http",))


def test_ca_defaults_and_spellings() -> None:
    s = load(mutate(BASE, 'kind = "enterprise"', 'kind = "Enterprise"\ncdp = ["LDAP", "Http"]'))
    ent, pub = s.cas
    assert (ent.kind, ent.cdp, ent.aia, ent.max_names) == (
        CAKind.ENTERPRISE, ("ldap", "http"), None, None)
    assert (pub.kind, pub.domain, pub.cdp, pub.aia, pub.max_names) == (
        CAKind.PUBLIC, None, None, None, None)


def test_ca_empty_cdp_list_means_no_extension() -> None:
    s = load(mutate(BASE, 'host = "crl.fabrikam-trust.example"',
                    'host = "crl.fabrikam-trust.example"\ncdp = []\naia = []\nmax_names = 2'))
    assert (s.cas[1].cdp, s.cas[1].aia, s.cas[1].max_names) == ((), (), 2)


def test_domain_joined_client_fqdn_defaults_to_name_dot_ad_domain() -> None:
    (client,) = load(BASE).clients
    assert client.domain_joined is True
    assert client.fqdn == "PC01.contoso.local"


def test_workgroup_client_fqdn_defaults_to_the_bare_name() -> None:
    (client,) = load(mutate(BASE, 'name = "PC01"', 'name = "WG01"\ndomain_joined = false')).clients
    assert client.domain_joined is False
    assert client.fqdn == "WG01"
    assert client.cert == CertSpec(issuer="Contoso-CA", san=("WG01",))


def test_explicit_client_fqdn_wins() -> None:
    (client,) = load(mutate(BASE, 'name = "PC01"', 'name = "PC01"\nfqdn = "pc01.corp.example"')
                     ).clients
    assert client.fqdn == "pc01.corp.example"
    assert client.cert is not None and client.cert.san == ("pc01.corp.example",)


def test_client_cert_defaults_to_the_mp_issuer_when_it_is_enterprise() -> None:
    (client,) = load(BASE).clients
    assert client.cert == CertSpec(issuer="Contoso-CA", san=("PC01.contoso.local",),
                                   revoked=False, eku=None, cdp=None)


def test_client_cert_defaults_to_the_first_enterprise_ca_when_the_mp_issuer_is_public() -> None:
    (client,) = load(mutate(BASE, 'issuer = "Contoso-CA"', 'issuer = "Fabrikam Public CA"')
                     ).clients
    assert client.cert is not None and client.cert.issuer == "Contoso-CA"


def test_client_cert_defaults_to_the_public_mp_issuer_without_an_enterprise_ca() -> None:
    s = load(mutate(PUBLIC_ONLY, "domain_joined = true", "domain_joined = false"))
    assert s.ad_domain is None
    (client,) = s.clients
    assert client.fqdn == "PC01"
    assert client.cert == CertSpec(issuer="Fabrikam Public CA", san=("PC01",))


def test_client_cert_table_fills_issuer_and_san_defaults() -> None:
    s = load(mutate(BASE, "\n[[client.step]]\naction = \"install\"",
                    "\n[client.cert]\nrevoked = true\n\n[[client.step]]\naction = \"install\""))
    assert s.clients[0].cert == CertSpec(issuer="Contoso-CA", san=("PC01.contoso.local",),
                                         revoked=True)


def test_client_cert_false_means_no_certificate() -> None:
    (client,) = load(mutate(BASE, 'name = "PC01"', 'name = "PC01"\ncert = false')).clients
    assert client.cert is None


def test_step_expectations_are_normalised() -> None:
    text = mutate(BASE, 'expect = "ok"', 'expect = " OK "')
    text = mutate(text, 'expect = "CRYPT_E_REVOCATION_OFFLINE"', "")
    steps = load(text).clients[0].steps
    assert [(st.action, st.location, st.expect) for st in steps] == [
        (Action.INSTALL, Zone.INTRANET, "ok"), (Action.REGISTER, Zone.VPN, None)]


def test_step_expectation_identifier_is_kept_as_written() -> None:
    steps = load(mutate(BASE, 'expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = " 0x80092013"')
                 ).clients[0].steps
    assert steps[1].expect == "0x80092013"


def test_network_reachable_overrides() -> None:
    s = load(BASE + '\n[network.reachable]\n"CA01.contoso.local" = ["intranet", "VPN"]\n'
             '"ldap:///" = []\n')
    assert dict(s.network.reachable) == {
        "ca01.contoso.local": frozenset({Zone.INTRANET, Zone.VPN}), "ldap:///": frozenset()}
    assert dict(load(BASE).network.reachable) == {}


# ------------------------------------------------------------------------------------------
# Bad input: each case is (old text, defective replacement, repaired replacement)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    old: str
    bad: str
    good: str
    """The passing twin's replacement for ``old``."""
    check: Callable[[Scenario], bool]
    """What the twin must have read (proves the twin exercises the same key)."""
    key: str | None
    at: str | None
    """Text on the line the error must name (in the defective document); None: no line."""
    fragments: tuple[str, ...]
    nth: int = 0
    """Which occurrence of ``at`` (for headers such as ``[[client.step]]``)."""
    base: str = BASE


CASES: list[Case] = [
    # TOML syntax: the line comes from tomllib
    Case("syntax-unterminated-string", 'code = "P01"', 'code = "P01', 'code = "P02"',
         lambda s: s.site.code == "P02", None, 'code = "P01',
         ("TOML syntax error: ", "Illegal character", "(column 12)")),
    Case("syntax-duplicate-key", "check_crl = true", "check_crl = true\ncheck_crl = false",
         "check_crl = false", lambda s: s.site.check_crl is False, None, "check_crl = false",
         ("TOML syntax error: ", "Cannot overwrite a value")),
    # Unknown keys, with and without a close match
    Case("unknown-top-level-table", '[site]\ncode = "P01"', '[sitee]\ncode = "P02"',
         '[site]\ncode = "P02"', lambda s: s.site.code == "P02", "sitee", "[sitee]",
         ("unknown key 'sitee' (did you mean 'site'?)",)),
    Case("unknown-top-level-key", "[scenario]\n", "zzz = 1\n[scenario]\n",
         "[network]\n[scenario]\n", lambda s: dict(s.network.reachable) == {}, "zzz",
         "zzz = 1",
         ("unknown key 'zzz'; allowed keys: ca, client, faults, mp, network, scenario, site",)),
    Case("unknown-key-in-site", "check_crl = true", "check_crll = false", "check_crl = false",
         lambda s: s.site.check_crl is False, "site.check_crll", "check_crll",
         ("unknown key 'check_crll' (did you mean 'check_crl'?)",)),
    Case("unknown-key-in-site-no-hint", "check_crl = true", "zzzz = false", "https_only = false",
         lambda s: s.site.https_only is False, "site.zzzz", "zzzz",
         ("unknown key 'zzzz'; allowed keys: check_crl, code, https_only, trusted_roots",)),
    Case("unknown-key-in-mp-cert", 'issuer = "Contoso-CA"\n',
         'issuer = "Contoso-CA"\nsans = ["IBCM-Intra.contoso.local"]\n',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local"]\n',
         lambda s: s.mp.cert.san == ("IBCM-Intra.contoso.local",), "mp.cert.sans", "sans =",
         ("unknown key 'sans' (did you mean 'san'?)",)),
    Case("unknown-key-in-second-ca", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\nmax_name = 2',
         'host = "crl.fabrikam-trust.example"\nmax_names = 2',
         lambda s: s.cas[1].max_names == 2, "ca[1].max_name", "max_name =",
         ("unknown key 'max_name' (did you mean 'max_names'?)",)),
    Case("unknown-key-in-client", 'name = "PC01"', 'name = "PC01"\ndomain_join = false',
         'name = "PC01"\ndomain_joined = false', lambda s: not s.clients[0].domain_joined,
         "client[0].domain_join", "domain_join =",
         ("unknown key 'domain_join' (did you mean 'domain_joined'?)",)),
    Case("unknown-key-in-step", 'expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expct = "fail"',
         'expect = "fail"', lambda s: s.clients[0].steps[1].expect == "fail",
         "client[0].step[1].expct", "expct",
         ("unknown key 'expct' (did you mean 'expect'?)",)),
    # Wrong types
    Case("string-for-bool", "check_crl = true", 'check_crl = "yes"', "check_crl = false",
         lambda s: s.site.check_crl is False, "site.check_crl", "check_crl",
         ("expected true or false, got a string 'yes'",)),
    Case("int-for-bool", "check_crl = true", "check_crl = 0", "check_crl = false",
         lambda s: s.site.check_crl is False, "site.check_crl", "check_crl",
         ("expected true or false, got an integer 0",)),
    Case("int-for-string", 'code = "P01"', "code = 101", 'code = "101"',
         lambda s: s.site.code == "101", "site.code", "code = 101",
         ("expected a string, got an integer",)),
    Case("int-for-title", 'title = "Loader test"', "title = 1", 'title = "1"',
         lambda s: s.info.title == "1", "scenario.title", "title = 1",
         ("expected a string, got an integer",)),
    Case("string-for-table", '[mp.cert]\nissuer = "Contoso-CA"', 'cert = "Contoso-CA"',
         'cert = { issuer = "Fabrikam Public CA" }',
         lambda s: s.mp.cert.issuer == "Fabrikam Public CA", "mp.cert", 'cert = "Contoso-CA"',
         ("expected a table, got a string",)),
    Case("table-for-array-of-tables", STEPS, '\n[client.step]\naction = "install"\n'
         'location = "intranet"\n', '\n[[client.step]]\naction = "install"\n'
         'location = "intranet"\n', lambda s: len(s.clients[0].steps) == 1,
         "client[0].step", "[client.step]", ("expected an array of tables", "got a table")),
    Case("string-for-integer", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\nmax_names = "2"',
         'host = "crl.fabrikam-trust.example"\nmax_names = 2',
         lambda s: s.cas[1].max_names == 2, "ca[1].max_names", "max_names",
         ("expected an integer, got a string",)),
    Case("bool-for-integer", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\nmax_names = true',
         'host = "crl.fabrikam-trust.example"\nmax_names = 1',
         lambda s: s.cas[1].max_names == 1, "ca[1].max_names", "max_names",
         ("expected an integer, got a boolean",)),
    Case("string-for-array", 'issuer = "Contoso-CA"\n',
         'issuer = "Contoso-CA"\nsan = "IBCM-Intra.contoso.local"\n',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local"]\n',
         lambda s: s.mp.cert.san == ("IBCM-Intra.contoso.local",), "mp.cert.san", "san =",
         ("expected an array of strings, got a string",)),
    Case("int-in-string-array", 'issuer = "Contoso-CA"\n',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", 443]\n',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "mp.contoso.local"]\n',
         lambda s: s.mp.cert.san[1] == "mp.contoso.local", "mp.cert.san[1]", "san =",
         ("expected a string, got an integer",)),
    Case("bool-true-for-client-cert", 'name = "PC01"', 'name = "PC01"\ncert = true',
         'name = "PC01"\ncert = false', lambda s: s.clients[0].cert is None,
         "client[0].cert", "cert = true",
         ("expected a [client.cert] table, [[client.cert]] tables for several "
          "certificates, or false for a computer without a client certificate, got a "
          "boolean",)),
    # Missing required keys: the line falls back to the table's header
    Case("missing-title", 'title = "Loader test"\n', "", 'title = "Another"\n',
         lambda s: s.info.title == "Another", "scenario.title", "[scenario]",
         ("is required but missing",)),
    Case("missing-mp-intranet-fqdn", 'intranet_fqdn = "IBCM-Intra.contoso.local"\n', "",
         'intranet_fqdn = "mp01.contoso.local"\n',
         lambda s: s.mp.cert.san == ("mp01.contoso.local", "IBCM-Internet.public.com"),
         "mp.intranet_fqdn", "[mp]", ("is required but missing",)),
    Case("missing-mp-cert-issuer", 'issuer = "Contoso-CA"\n', "",
         'issuer = "Fabrikam Public CA"\n',
         lambda s: s.mp.cert.issuer == "Fabrikam Public CA", "mp.cert.issuer", "[mp.cert]",
         ("is required but missing",)),
    Case("missing-ca-kind", 'kind = "public"\n', "", 'kind = "PUBLIC"\n',
         lambda s: s.cas[1].kind is CAKind.PUBLIC, "ca[1].kind", "[[ca]]",
         ("is required but missing",), nth=1),
    Case("missing-ccmsetup",
         'ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 '
         'SMSMP=https://IBCM-Intra.contoso.local"\n', "",
         'ccmsetup = "ccmsetup /UsePKICert"\n',
         lambda s: s.clients[0].ccmsetup.raw == "ccmsetup /UsePKICert",
         "client[0].ccmsetup", "[[client]]", ("is required but missing",)),
    Case("blank-ccmsetup",
         'ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 '
         'SMSMP=https://IBCM-Intra.contoso.local"', 'ccmsetup = "  "',
         'ccmsetup = "ccmsetup /UsePKICert"',
         lambda s: s.clients[0].ccmsetup.use_pki_cert, "client[0].ccmsetup", 'ccmsetup = "  "',
         ("must not be empty",)),
    Case("missing-step-action", 'action = "register"\n', "", 'action = "policy"\n',
         lambda s: s.clients[0].steps[1].action is Action.POLICY, "client[0].step[1].action",
         "[[client.step]]", ("is required but missing",), nth=1),
    # References to CAs that are not defined
    Case("dangling-mp-cert-issuer", 'issuer = "Contoso-CA"', 'issuer = "Contoso CA"',
         'issuer = "Fabrikam Public CA"', lambda s: s.mp.cert.issuer == "Fabrikam Public CA",
         "mp.cert.issuer", 'issuer = "Contoso CA"',
         ("There is no CA named 'Contoso CA' (defined: 'Contoso-CA', 'Fabrikam Public CA')",)),
    Case("dangling-client-cert-issuer", '\n[[client.step]]\naction = "install"',
         '\n[client.cert]\nissuer = "Litware-CA"\n\n[[client.step]]\naction = "install"',
         '\n[client.cert]\nissuer = "Fabrikam Public CA"\n\n[[client.step]]\n'
         'action = "install"',
         lambda s: s.clients[0].cert == CertSpec("Fabrikam Public CA", ("PC01.contoso.local",)),
         "client[0].cert.issuer", 'issuer = "Litware-CA"',
         ("There is no CA named 'Litware-CA' (defined: 'Contoso-CA', 'Fabrikam Public CA')",)),
    Case("dangling-inline-client-cert-issuer", 'name = "PC01"',
         'name = "PC01"\ncert = { issuer = "Litware-CA" }',
         'name = "PC01"\ncert = { issuer = "Contoso-CA", revoked = true }',
         lambda s: s.clients[0].cert is not None and s.clients[0].cert.revoked,
         "client[0].cert.issuer", "cert = {", ("There is no CA named 'Litware-CA'",)),
    Case("dangling-trusted-root", "check_crl = true",
         'check_crl = true\ntrusted_roots = ["Contoso-CA", "Litware-CA"]',
         'check_crl = true\ntrusted_roots = ["Contoso-CA", "Fabrikam Public CA"]',
         lambda s: s.site.trusted_roots == ("Contoso-CA", "Fabrikam Public CA"),
         "site.trusted_roots[1]", "trusted_roots",
         ("There is no CA named 'Litware-CA' (defined: 'Contoso-CA', 'Fabrikam Public CA')",)),
    # Impossible combinations
    Case("enterprise-ca-without-domain", 'domain = "contoso.local"\n', "",
         'domain = "corp.contoso.com"\n', lambda s: s.ad_domain == "corp.contoso.com",
         "ca[0].domain", "[[ca]]",
         ("an enterprise CA needs its AD domain (domain = \"contoso.local\")",)),
    Case("public-ca-with-domain", 'kind = "public"\nhost = "crl.fabrikam-trust.example"',
         'kind = "public"\nhost = "crl.fabrikam-trust.example"\ndomain = "fabrikam.example"',
         'kind = "enterprise"\nhost = "crl.fabrikam-trust.example"\n'
         'domain = "fabrikam.example"',
         lambda s: (s.cas[1].kind, s.cas[1].domain) == (CAKind.ENTERPRISE, "fabrikam.example"),
         "ca[1].domain", 'domain = "fabrikam.example"',
         ("only an enterprise CA has an AD domain; remove it or use kind = \"enterprise\"",)),
    Case("max-names-on-enterprise-ca",
         'domain = "contoso.local"\n\n[[ca]]\nname = "Fabrikam Public CA"\nkind = "public"\n'
         'host = "crl.fabrikam-trust.example"',
         'domain = "contoso.local"\nmax_names = 1\n\n[[ca]]\nname = "Fabrikam Public CA"\n'
         'kind = "public"\nhost = "crl.fabrikam-trust.example"',
         'domain = "contoso.local"\n\n[[ca]]\nname = "Fabrikam Public CA"\nkind = "public"\n'
         'host = "crl.fabrikam-trust.example"\nmax_names = 1',
         lambda s: (s.cas[0].max_names, s.cas[1].max_names) == (None, 1),
         "ca[0].max_names", "max_names = 1",
         ("a name limit is a public CA plan's; an enterprise CA issues whatever its template "
          "allows",)),
    Case("max-names-zero", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\nmax_names = 0',
         'host = "crl.fabrikam-trust.example"\nmax_names = 1',
         lambda s: s.cas[1].max_names == 1, "ca[1].max_names", "max_names = 0",
         ("expected 1 or more, got 0",)),
    Case("max-names-negative", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\nmax_names = -3',
         'host = "crl.fabrikam-trust.example"\nmax_names = 3',
         lambda s: s.cas[1].max_names == 3, "ca[1].max_names", "max_names = -3",
         ("expected 1 or more, got -3",)),
    Case("ldap-cdp-on-public-ca", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\ncdp = ["http", "ldap"]',
         'host = "crl.fabrikam-trust.example"\ncdp = ["http"]',
         lambda s: s.cas[1].cdp == ("http",), "ca[1].cdp[1]", "cdp =",
         ("'ldap' means the AD CS LDAP template and needs an enterprise CA; a public CA "
          "publishes over HTTP",)),
    Case("ldap-cdp-in-cert-of-public-ca", 'issuer = "Contoso-CA"',
         'issuer = "Fabrikam Public CA"\ncdp = ["ldap"]',
         'issuer = "Contoso-CA"\ncdp = ["ldap"]',
         lambda s: s.mp.cert.cdp == ("ldap",), "mp.cert.cdp[0]", "cdp =",
         ("'ldap' means the AD CS LDAP template and needs an enterprise CA",)),
    Case("https-cdp-url", 'domain = "contoso.local"',
         'domain = "contoso.local"\ncdp = ["ldap", "https://ca01.contoso.local/CertEnroll/x.crl"]',
         'domain = "contoso.local"\ncdp = ["ldap", "http://ca01.contoso.local/CertEnroll/x.crl"]',
         lambda s: s.cas[0].cdp == ("ldap", "http://ca01.contoso.local/CertEnroll/x.crl"),
         "ca[0].cdp[1]", "cdp =",
         ("expected an http://, ldap:// or file:// URL, got "
          "'https://ca01.contoso.local/CertEnroll/x.crl'", "plain HTTP")),
    Case("https-aia-url", 'domain = "contoso.local"',
         'domain = "contoso.local"\naia = ["HTTPS://ca01.contoso.local/x.crt"]',
         'domain = "contoso.local"\naia = ["file://ca01.contoso.local/x.crt"]',
         lambda s: s.cas[0].aia == ("file://ca01.contoso.local/x.crt",),
         "ca[0].aia[0]", "aia =", ("got 'HTTPS://ca01.contoso.local/x.crt'",)),
    Case("unknown-url-scheme", 'domain = "contoso.local"',
         'domain = "contoso.local"\ncdp = ["ftp://ca01.contoso.local/x.crl"]',
         'domain = "contoso.local"\ncdp = ["ldap://ca01.contoso.local/CN=x"]',
         lambda s: s.cas[0].cdp == ("ldap://ca01.contoso.local/CN=x",), "ca[0].cdp[0]", "cdp =",
         ("expected 'ldap', 'http' or a full ldap://, http:// or file:// URL, got "
          "'ftp://ca01.contoso.local/x.crl'",)),
    Case("cdp-entry-twice", 'host = "crl.fabrikam-trust.example"',
         'host = "crl.fabrikam-trust.example"\ncdp = ["http", "HTTP"]',
         'host = "crl.fabrikam-trust.example"\ncdp = ["http", "http://crl2.fabrikam.example/x.crl"]',
         lambda s: s.cas[1].cdp == ("http", "http://crl2.fabrikam.example/x.crl"),
         "ca[1].cdp[1]", "cdp =", ("'HTTP' is listed twice",)),
    Case("duplicate-ca-name", 'name = "Fabrikam Public CA"', 'name = "Contoso-CA"',
         'name = "Contoso-CA2"', lambda s: [c.name for c in s.cas] == ["Contoso-CA", "Contoso-CA2"],
         "ca[1].name", 'name = "Contoso-CA"', ("a CA named 'Contoso-CA' is already defined",),
         nth=1),
    Case("duplicate-client-name", STEPS, STEPS + second_client("pc01", "internet"),
         STEPS + second_client("PC02", "internet"),
         lambda s: [c.name for c in s.clients] == ["PC01", "PC02"], "client[1].name",
         'name = "pc01"', ("a client named 'pc01' is already defined",)),
    Case("domain-joined-client-without-enterprise-ca", "domain_joined = true",
         "domain_joined = true", "domain_joined = false",
         lambda s: s.clients[0].fqdn == "PC01", "client[0].domain_joined", "domain_joined",
         ("a domain-joined client needs an AD domain: define an enterprise [[ca]] with "
          "domain = \"...\"",), base=PUBLIC_ONLY),
    Case("client-without-steps", STEPS, "", '\n[[client.step]]\naction = "policy"\n'
         'location = "dmz"\n', lambda s: s.clients[0].steps[0].location is Zone.DMZ,
         "client[0].step", "[[client]]", ("a client needs at least one [[client.step]]",)),
    # Names that are not in the vocabulary
    Case("bad-zone", 'location = "vpn"', 'location = "home"', 'location = "DMZ"',
         lambda s: s.clients[0].steps[1].location is Zone.DMZ, "client[0].step[1].location",
         'location = "home"',
         ("expected one of 'intranet', 'internet', 'vpn', 'dmz', got 'home'",)),
    Case("bad-action", 'action = "register"', 'action = "enroll"',
         'action = "Clear-Internet-FQDN"',
         lambda s: s.clients[0].steps[1].action is Action.CLEAR_INTERNET_FQDN,
         "client[0].step[1].action", 'action = "enroll"',
         ("expected one of 'install', 'register', 'location', 'policy', 'inventory', "
          "'browse-mplist', 'clear-internet-fqdn', 'clear-url-cache', 'resync-chain-cache', "
          "'restart-agent-host', got 'enroll'",)),
    Case("bad-ca-kind", 'kind = "public"', 'kind = "commercial"', 'kind = "public"',
         lambda s: s.cas[1].kind is CAKind.PUBLIC, "ca[1].kind", 'kind = "commercial"',
         ("expected one of 'enterprise', 'public', got 'commercial'",)),
    Case("bad-eku", 'issuer = "Contoso-CA"', 'issuer = "Contoso-CA"\neku = ["server"]',
         'issuer = "Contoso-CA"\neku = ["client_auth"]',
         lambda s: s.mp.cert.eku == (EKU.CLIENT_AUTH,), "mp.cert.eku[0]", "eku =",
         ("expected one of 'server_auth', 'client_auth', got 'server'",)),
    Case("blank-expect", 'expect = "ok"', 'expect = "  "', 'expect = "FAIL"',
         lambda s: s.clients[0].steps[0].expect == "fail", "client[0].step[0].expect",
         'expect = "  "', ("expected 'ok', 'fail' or a failure identifier",)),
    # An expectation no step can ever give is refused, not left to show up as a miss
    Case("typo-expect", 'expect = "CRYPT_E_REVOCATION_OFFLINE"',
         'expect = "CRYPT_E_REVOCATION_OFLINE"', 'expect = "crypt_e_revocation_offline"',
         lambda s: s.clients[0].steps[1].expect == "crypt_e_revocation_offline",
         "client[0].step[1].expect", "CRYPT_E_REVOCATION_OFLINE",
         ("unknown identifier 'CRYPT_E_REVOCATION_OFLINE', no step can give it; "
          "did you mean 'CRYPT_E_REVOCATION_OFFLINE'",)),
    Case("typo-expect-hex", 'expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "0x87D0281"',
         'expect = "0x87d00281"', lambda s: s.clients[0].steps[1].expect == "0x87d00281",
         "client[0].step[1].expect", "0x87D0281",
         ("unknown identifier '0x87D0281'", "did you mean '0x87D00281'")),
    Case("unknown-expect-no-hint", 'expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "zzzz"',
         'expect = "cert_rev_failed"',
         lambda s: s.clients[0].steps[1].expect == "cert_rev_failed",
         "client[0].step[1].expect", "zzzz",
         ("unknown identifier 'zzzz', no step can give it: expected 'ok', 'fail', a code name "
          "or value",)),
    Case("expect-http-200", 'expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "200"',
         'expect = "503"', lambda s: s.clients[0].steps[1].expect == "503",
         "client[0].step[1].expect", 'expect = "200"', ("unknown identifier '200'",)),
    # DNS names, site code, CA and computer names
    Case("bad-dns-mp-intranet-fqdn", 'intranet_fqdn = "IBCM-Intra.contoso.local"',
         'intranet_fqdn = "IBCM_Intra.contoso.local"',
         'intranet_fqdn = "IBCM-Intra2.contoso.local"',
         lambda s: s.mp.intranet_fqdn == "IBCM-Intra2.contoso.local", "mp.intranet_fqdn",
         "intranet_fqdn",
         ("expected a DNS host name (letters, digits, '-', '.'), got 'IBCM_Intra.contoso.local'",
          )),
    Case("bad-dns-mp-internet-fqdn", 'internet_fqdn = "IBCM-Internet.public.com"',
         'internet_fqdn = "https://IBCM-Internet.public.com"',
         'internet_fqdn = "ibcm.public.com"', lambda s: s.mp.internet_fqdn == "ibcm.public.com",
         "mp.internet_fqdn", "internet_fqdn",
         ("expected a DNS host name", "got 'https://IBCM-Internet.public.com'")),
    Case("bad-dns-ca-host", 'host = "ca01.contoso.local"', 'host = "ca01..contoso.local"',
         'host = "ca-01.contoso.local"', lambda s: s.cas[0].host == "ca-01.contoso.local",
         "ca[0].host", 'host = "ca01..contoso.local"',
         ("expected a DNS host name", "got 'ca01..contoso.local'")),
    Case("bad-dns-ca-domain", 'domain = "contoso.local"', 'domain = "contoso local"',
         'domain = "contoso.example"', lambda s: s.ad_domain == "contoso.example",
         "ca[0].domain", 'domain = "contoso local"', ("got 'contoso local'",)),
    Case("bad-dns-in-san", 'issuer = "Contoso-CA"',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "www..public.com"]',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "www.public.com"]',
         lambda s: s.mp.cert.san[1] == "www.public.com", "mp.cert.san[1]", "san =",
         ("expected a DNS host name", "got 'www..public.com'")),
    # A wildcard is a name now (reference §3.6); a partial one is not.
    Case("partial-wildcard-in-san", 'issuer = "Contoso-CA"',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "w*.public.com"]',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "*.public.com"]',
         lambda s: s.mp.cert.san[1] == "*.public.com", "mp.cert.san[1]", "san =",
         ("or a wildcard such as '*.fabrikam.com'", "whole left-most label")),
    Case("empty-san", 'issuer = "Contoso-CA"', 'issuer = "Contoso-CA"\nsan = []',
         'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local"]',
         lambda s: len(s.mp.cert.san) == 1, "mp.cert.san", "san = []",
         ("expected at least one DNS name",)),
    Case("bad-dns-client-fqdn", 'name = "PC01"', 'name = "PC01"\nfqdn = "pc01.contoso.local."',
         'name = "PC01"\nfqdn = "pc01.corp.example"',
         lambda s: s.clients[0].fqdn == "pc01.corp.example", "client[0].fqdn",
         'fqdn = "pc01.contoso.local."',
         ("expected a DNS host name", "got 'pc01.contoso.local.'")),
    Case("bad-dns-network-host", "[scenario]\n",
         '[network.reachable]\n"ca01_contoso" = ["intranet"]\n\n[scenario]\n',
         '[network.reachable]\n"ca01-contoso" = ["intranet"]\n\n[scenario]\n',
         lambda s: dict(s.network.reachable) == {"ca01-contoso": frozenset({Zone.INTRANET})},
         "network.reachable.ca01_contoso", '"ca01_contoso"', ("got 'ca01_contoso'",)),
    Case("bad-zone-in-network", "[scenario]\n",
         '[network.reachable]\n"ca01.contoso.local" = ["intranet", "mars"]\n\n[scenario]\n',
         '[network.reachable]\n"ca01.contoso.local" = ["intranet", "Internet"]\n\n[scenario]\n',
         lambda s: s.network.reachable["ca01.contoso.local"] == {Zone.INTRANET, Zone.INTERNET},
         "network.reachable.ca01.contoso.local[1]", '"ca01.contoso.local" =',
         ("expected one of 'intranet', 'internet', 'vpn', 'dmz', got 'mars'",)),
    Case("bad-site-code-short", 'code = "P01"', 'code = "P0"', 'code = "abc"',
         lambda s: s.site.code == "ABC", "site.code", 'code = "P0"',
         ("expected a 3-character site code, got 'P0'",)),
    Case("bad-site-code-punctuation", 'code = "P01"', 'code = "P-1"', 'code = "0P1"',
         lambda s: s.site.code == "0P1", "site.code", 'code = "P-1"',
         ("expected a 3-character site code, got 'P-1'",)),
    Case("bad-ca-name", 'name = "Fabrikam Public CA"', 'name = "Fabrikam/Public"',
         'name = "Fabrikam Public CA (G2)"', lambda s: s.cas[1].name == "Fabrikam Public CA (G2)",
         "ca[1].name", 'name = "Fabrikam/Public"',
         ("expected a CA name of letters, digits, spaces and -._() (at most 64 characters), "
          "got 'Fabrikam/Public'",)),
    Case("bad-client-name", 'name = "PC01"', 'name = "PC_01"', 'name = "PC-01"',
         lambda s: s.clients[0].fqdn == "PC-01.contoso.local", "client[0].name",
         'name = "PC_01"',
         ("expected a computer name (letters, digits, '-'), got 'PC_01'",)),
    # The second [[client]]'s steps are counted from zero again
    Case("second-client-step-located", STEPS,
         STEPS + second_client("PC02", "moon"),
         STEPS + second_client("PC02", "vpn"),
         lambda s: s.clients[1].steps[0].location is Zone.VPN, "client[1].step[0].location",
         'location = "moon"', ("got 'moon'",)),
]


def _bad_text(case: Case) -> str:
    return mutate(case.base, case.old, case.bad)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_reported_with_file_line_and_key(case: Case) -> None:
    text = _bad_text(case)
    err = load_fails(text)
    line = None if case.at is None else line_of(text, case.at, case.nth)
    assert type(err) is ScenarioError
    assert (err.file, err.line, err.key) == ("x.toml", line, case.key)
    for fragment in case.fragments:
        assert fragment in err.message, (fragment, err.message)
    assert "\n" not in str(err)
    where = "x.toml" if line is None else f"x.toml:{line}"
    if case.key is None:
        assert str(err) == f"{where}: {err.message}"
    else:
        assert str(err) == f"{where}: {case.key}: {err.message}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_twin_loads(case: Case) -> None:
    s = load(mutate(case.base, case.old, case.good))
    assert case.check(s), case.id


def test_syntax_error_message_drops_tomllib_position_for_the_line_number() -> None:
    err = load_fails(mutate(BASE, 'code = "P01"', 'code = "P01'))
    assert err.line == 6
    assert err.message == "TOML syntax error: Illegal character '\\n' (column 12)"
    assert str(err) == "x.toml:6: TOML syntax error: Illegal character '\\n' (column 12)"
    assert err.__cause__ is None and err.__suppress_context__


def test_missing_top_level_tables_are_named() -> None:
    no_mp = mutate(BASE, '[mp]\nintranet_fqdn = "IBCM-Intra.contoso.local"\n'
                   'internet_fqdn = "IBCM-Internet.public.com"\n\n[mp.cert]\n'
                   'issuer = "Contoso-CA"\n', "")
    err = load_fails(no_mp)
    assert (err.key, err.line, err.message) == ("mp", None, "is required but missing")
    assert str(err) == "x.toml: mp: is required but missing"

    no_client = BASE[: BASE.index("[[client]]")]
    err = load_fails(no_client)
    assert (err.key, err.line, err.message) == ("client", None,
                                                "at least one [[client]] is required")

    no_scenario = mutate(BASE, '[scenario]\ntitle = "Loader test"\n'
                         'description = "A small scenario the loader tests mutate."\n', "")
    err = load_fails(no_scenario)
    assert (err.key, err.message) == ("scenario", "is required but missing")


def test_missing_ca_is_named() -> None:
    no_ca = mutate(PUBLIC_ONLY, '[[ca]]\nname = "Fabrikam Public CA"\nkind = "public"\n'
                   'host = "crl.fabrikam-trust.example"\n', "")
    err = load_fails(no_ca)
    assert (err.file, err.line, err.key) == ("x.toml", None, "ca")
    assert str(err) == "x.toml: ca: at least one [[ca]] is required"
    # twin
    assert len(load(PUBLIC_ONLY.replace("domain_joined = true", "domain_joined = false")).cas) == 1


# ------------------------------------------------------------------------------------------
# The ccmsetup line: parser messages, located by the loader
# ------------------------------------------------------------------------------------------

BAD_CCMSETUP = [
    pytest.param("SMSSITECODE=P01", "SMSSITECODE=P0",
                 "expected a 3-character site code (letters and digits) or AUTO, got 'P0'",
                 id="site-code"),
    pytest.param("SMSSITECODE=P01", "SMSSITECODE=P01 FOO=1",
                 "unknown client.msi property 'FOO' in 'FOO=1'", id="unknown-property"),
    pytest.param("/UsePKICert", "/UsePKICrt", "did you mean '/UsePKICert'?",
                 id="unknown-parameter"),
    pytest.param("SMSMP=https://", 'SMSMP=\\"https://', "unbalanced double quote",
                 id="unbalanced-quote"),
]


@pytest.mark.parametrize(("old", "new", "fragment"), BAD_CCMSETUP)
def test_malformed_ccmsetup_is_located_on_the_ccmsetup_key(old: str, new: str,
                                                           fragment: str) -> None:
    text = mutate(BASE, old, new)
    err = load_fails(text)
    bad_line = tomllib.loads(text)["client"][0]["ccmsetup"]
    with pytest.raises(CcmsetupSyntaxError) as direct:
        parse_ccmsetup(bad_line)
    assert isinstance(err, CcmsetupSyntaxError)
    assert (err.file, err.line, err.key) == ("x.toml", 29, "client[0].ccmsetup")
    assert line_of(text, "ccmsetup = ") == 29
    assert err.message == direct.value.message
    assert fragment in err.message
    assert str(err) == f"x.toml:29: client[0].ccmsetup: {direct.value.message}"
    assert isinstance(err.__cause__, CcmsetupSyntaxError)


def test_wellformed_ccmsetup_twin_is_parsed() -> None:
    (client,) = load(BASE).clients
    assert client.ccmsetup.raw == CCMSETUP
    assert client.ccmsetup.site_code == "P01"
    assert client.ccmsetup.use_pki_cert is True
    assert client.ccmsetup.smsmp is not None and client.ccmsetup.smsmp.https


def test_malformed_ccmsetup_of_second_client_names_that_client() -> None:
    text = BASE + second_client("PC02", "vpn").replace(
        "SMSSITECODE=P01", "SMSSITECODE=P01 CCMALWAYSINF=2")
    err = load_fails(text)
    assert (err.key, err.line) == ("client[1].ccmsetup", line_of(text, "ccmsetup = ", nth=1))
    assert "CCMALWAYSINF" in err.message
    twin = BASE + second_client("PC02", "vpn").replace(
        "SMSSITECODE=P01", "SMSSITECODE=P01 CCMALWAYSINF=1")
    assert load(twin).clients[1].ccmsetup.always_internet is True


# ------------------------------------------------------------------------------------------
# Files and folders
# ------------------------------------------------------------------------------------------


def test_file_is_named_in_errors_and_scenario(tmp_path: Path) -> None:
    good = tmp_path / "good-case.toml"
    good.write_text(BASE, encoding="utf-8")
    s = load_scenario(good)
    assert (s.name, s.file) == ("good-case", str(good))

    bad = tmp_path / "bad-case.toml"
    bad.write_text(mutate(BASE, 'location = "vpn"', 'location = "home"'), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    assert (info.value.file, info.value.line, info.value.key) == (
        str(bad), 38, "client[0].step[1].location")
    assert str(info.value) == (
        f"{bad}:38: client[0].step[1].location: expected one of 'intranet', 'internet', "
        "'vpn', 'dmz', got 'home'")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    text = mutate(BASE, 'title = "Loader test"', 'title = "Wörkgroup test"')
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(text.encode("latin-1"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    err = info.value
    assert (err.file, err.line, err.key, err.message) == (str(bad), 2, None, "is not UTF-8 text")
    assert str(err) == f"{bad}:2: is not UTF-8 text"
    # twin: the same text in UTF-8
    good = tmp_path / "utf8.toml"
    good.write_bytes(text.encode("utf-8"))
    assert load_scenario(good).info.title == "Wörkgroup test"


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(missing)
    err = info.value
    assert (err.file, err.line, err.key, err.message) == (str(missing), None, None, "no such file")
    assert str(err) == f"{missing}: no such file"
    missing.write_text(BASE, encoding="utf-8")
    assert load_scenario(missing).name == "nope"


def test_folder_given_to_load_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path)
    assert (info.value.file, info.value.message) == (
        str(tmp_path), "is a folder, expected a .toml file")


def test_discover_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ScenarioError) as info:
        discover([missing])
    err = info.value
    assert (err.file, err.line, err.key) == (str(missing), None, None)
    assert str(err) == f"{missing}: no such file or folder"
    missing.mkdir()
    (missing / "a.toml").write_text(BASE, encoding="utf-8")
    assert discover([missing]) == [missing / "a.toml"]


def test_folder_without_toml_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a scenario", encoding="utf-8")
    (tmp_path / "scenario.toml.bak").write_text(BASE, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        discover([tmp_path])
    err = info.value
    assert (err.file, err.line, err.key) == (str(tmp_path), None, None)
    assert str(err) == f"{tmp_path}: the folder holds no *.toml scenario files"
    # twin: one *.toml in a subfolder is found (recursively), the others are still ignored
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "one.toml").write_text(BASE, encoding="utf-8")
    assert discover([tmp_path]) == [tmp_path / "sub" / "one.toml"]


def test_load_all_stops_at_the_first_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a-good.toml").write_text(BASE, encoding="utf-8")
    bad = tmp_path / "b-bad.toml"
    bad.write_text(mutate(BASE, "check_crl = true", 'check_crl = "yes"'), encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_all([tmp_path])
    assert (info.value.file, info.value.line, info.value.key) == (str(bad), 7, "site.check_crl")
    bad.write_text(BASE, encoding="utf-8")
    assert [s.name for s in load_all([tmp_path])] == ["a-good", "b-bad"]


def test_load_all_refuses_two_scenarios_with_one_name(tmp_path: Path) -> None:
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.toml").write_text(BASE, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_all([tmp_path])
    assert info.value.file == str(tmp_path / "two" / "same.toml")
    assert info.value.message == (f"two scenarios share the name 'same' (also "
                                  f"{tmp_path / 'one' / 'same.toml'}); rename one file")
    (tmp_path / "two" / "same.toml").rename(tmp_path / "two" / "other.toml")
    assert [s.name for s in load_all([tmp_path])] == ["same", "other"]


def test_scenario_error_is_a_lab_error_with_exit_code_2() -> None:
    err = load_fails(mutate(BASE, 'code = "P01"', 'code = "P0"'))
    assert isinstance(err, LabError) and isinstance(err, ValueError)
    assert err.exit_code == 2


# ------------------------------------------------------------------------------------------
# Edge cases found in review: trailing newlines, BOM, end of file, hints, line numbers
# ------------------------------------------------------------------------------------------

TRAILING_NEWLINE = [
    pytest.param('code = "P01"', 'code = "P01\\n"', "site.code", id="site-code"),
    pytest.param('host = "ca01.contoso.local"', 'host = "ca01.contoso.local\\n"', "ca[0].host",
                 id="ca-host"),
    pytest.param('issuer = "Contoso-CA"',
                 'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local\\n"]',
                 "mp.cert.san[0]", id="mp-san"),
]


@pytest.mark.parametrize(("old", "new", "key"), TRAILING_NEWLINE)
def test_value_with_trailing_newline_is_rejected(old: str, new: str, key: str) -> None:
    err = load_fails(mutate(BASE, old, new))
    assert err.key == key


@pytest.mark.parametrize(("old", "new", "key"), TRAILING_NEWLINE)
def test_value_without_trailing_newline_twin_loads(old: str, new: str, key: str) -> None:
    s = load(mutate(BASE, old, new.replace("\\n", "")))
    assert (s.site.code, s.cas[0].host, s.mp.cert.san[0]) == (
        "P01", "ca01.contoso.local", "IBCM-Intra.contoso.local")


def test_file_with_utf8_bom_loads(tmp_path: Path) -> None:
    p = tmp_path / "bom.toml"
    p.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_scenario(p).info.title == "Loader test"


def test_file_without_bom_twin_loads(tmp_path: Path) -> None:
    p = tmp_path / "nobom.toml"
    p.write_bytes(BASE.encode("utf-8"))
    assert load_scenario(p).info.title == "Loader test"


def test_syntax_error_at_end_of_document_names_the_last_line() -> None:
    text = BASE + "foo = "
    err = load_fails(text)
    assert err.line == len(text.splitlines())
    assert "at end of document" not in err.message


def test_syntax_error_before_the_end_twin_has_a_line() -> None:
    text = BASE + "foo = \n"
    err = load_fails(text)
    assert err.line == len(text.splitlines())


def test_table_for_array_of_tables_hint_uses_toml_spelling() -> None:
    err = load_fails(mutate(BASE, STEPS, '\n[client.step]\naction = "install"\n'
                            'location = "intranet"\n'))
    assert "[[client.step]]" in err.message


def test_implicit_domain_joined_error_suggests_domain_joined_false() -> None:
    err = load_fails(mutate(PUBLIC_ONLY, "domain_joined = true\n", ""))
    assert err.key == "client[0].domain_joined"
    assert "domain_joined = false" in err.message


def test_unquoted_dotted_host_in_network_reachable_says_to_quote_it() -> None:
    err = load_fails(BASE + '\n[network.reachable]\nca01.contoso.local = ["intranet"]\n')
    assert '"ca01.contoso.local"' in err.message or "quote" in err.message.lower()


def test_quoted_dotted_host_in_network_reachable_twin_loads() -> None:
    s = load(BASE + '\n[network.reachable]\n"ca01.contoso.local" = ["intranet"]\n')
    assert dict(s.network.reachable) == {"ca01.contoso.local": frozenset({Zone.INTRANET})}


def test_header_like_line_inside_multiline_string_does_not_move_the_line() -> None:
    text = mutate(BASE, 'description = "A small scenario the loader tests mutate."',
                  'description = """\nSee the\n[[client]]\ntable below."""')
    text = mutate(text, 'location = "vpn"', 'location = "home"')
    err = load_fails(text)
    assert err.key == "client[0].step[1].location"
    assert err.line == line_of(text, 'location = "home"')


def test_plain_multiline_description_twin_keeps_the_line() -> None:
    text = mutate(BASE, 'description = "A small scenario the loader tests mutate."',
                  'description = """\nSee the\nclient table below."""')
    text = mutate(text, 'location = "vpn"', 'location = "home"')
    err = load_fails(text)
    assert (err.key, err.line) == ("client[0].step[1].location", line_of(text, "home"))


MP_HEAD = ('[mp]\nintranet_fqdn = "IBCM-Intra.contoso.local"\n'
           'internet_fqdn = "IBCM-Internet.public.com"\n\n')


def test_missing_key_of_implicit_table_names_the_subtable_line() -> None:
    text = mutate(BASE, MP_HEAD, "")
    err = load_fails(text)
    assert err.key == "mp.intranet_fqdn"
    assert err.line == line_of(text, "[mp.cert]")


def test_missing_key_of_explicit_table_twin_names_the_header_line() -> None:
    text = mutate(BASE, MP_HEAD, '[mp]\ninternet_fqdn = "IBCM-Internet.public.com"\n\n')
    err = load_fails(text)
    assert (err.key, err.line) == ("mp.intranet_fqdn", line_of(text, "[mp]"))


# ------------------------------------------------------------------------------------------
# The failure-catalogue knobs: each bad value is refused with its key, each twin loads
# ------------------------------------------------------------------------------------------

DESCRIPTION = 'description = "A small scenario the loader tests mutate."'
CA_DOMAIN = 'domain = "contoso.local"'
CLIENT_NAME = 'name = "PC01"'
MP_ISSUER = 'issuer = "Contoso-CA"'

KNOBS = [
    # (id, anchor, bad addition, key, message fragment, good addition, check on the twin)
    ("timezone", DESCRIPTION, 'timezone = "Mars/Olympus"', "scenario.timezone",
     "expected an IANA time zone", 'timezone = "Asia/Tokyo"',
     lambda s: s.info.timezone == "Asia/Tokyo"),
    ("crl-next-update-format", CA_DOMAIN, 'crl_next_update = "tomorrow"', "ca[0].crl_next_update",
     "expected a time relative to the run", 'crl_this_update = "-8d"\ncrl_next_update = "-1h"',
     lambda s: s.cas[0].crl_next_update == dt.timedelta(hours=-1)),
    ("crl-window-inverted", CA_DOMAIN, 'crl_this_update = "+1d"\ncrl_next_update = "+1h"',
     "ca[0].crl_next_update", "must be later than crl_this_update",
     'crl_this_update = "+1d"\ncrl_next_update = "+8d"',
     lambda s: s.cas[0].crl_this_update == dt.timedelta(days=1)),
    ("parent-unknown", CA_DOMAIN, 'parent = "Nope"', "ca[0].parent",
     "There is no CA named 'Nope'", 'parent = "Fabrikam Public CA"',
     lambda s: s.cas[0].parent == "Fabrikam Public CA"),
    ("parent-loop", CA_DOMAIN, 'parent = "Contoso-CA"', "ca[0].parent",
     "the CA hierarchy loops back to 'Contoso-CA'", 'parent = "Fabrikam Public CA"',
     lambda s: s.cas[0].parent == "Fabrikam Public CA"),
    ("revoked-root", CA_DOMAIN, "revoked = true", "ca[0].revoked",
     "only an issuing CA (one with a parent) can be revoked",
     'revoked = true\nparent = "Fabrikam Public CA"', lambda s: s.cas[0].revoked),
    ("crl-signer-unknown", CA_DOMAIN, 'crl_signer = "Nope"', "ca[0].crl_signer",
     "There is no CA named 'Nope'", 'crl_signer = "Fabrikam Public CA"',
     lambda s: s.cas[0].crl_signer == "Fabrikam Public CA"),
    ("crl-sign-type", CA_DOMAIN, 'crl_sign = "no"', "ca[0].crl_sign",
     "expected true or false", "crl_sign = false", lambda s: s.cas[0].crl_sign is False),
    ("delta-cdp-https", CA_DOMAIN, 'delta_cdp = ["https://pki.contoso.com/d+.crl"]',
     "ca[0].delta_cdp[0]", "expected an http://, ldap:// or file:// URL",
     'delta_cdp = ["ldap", "http"]', lambda s: s.cas[0].delta_cdp == ("ldap", "http")),
    ("cert-validity-inverted", MP_ISSUER, 'not_before = "-1d"\nnot_after = "-2d"',
     "mp.cert.not_after", "must be later than not_before",
     'not_before = "-366d"\nnot_after = "-1d"',
     lambda s: s.mp.cert.not_after == dt.timedelta(days=-1)),
    ("client-trusted-roots", CLIENT_NAME, 'trusted_roots = ["Nope"]',
     "client[0].trusted_roots[0]", "There is no CA named 'Nope'",
     'trusted_roots = ["Contoso-CA"]', lambda s: s.clients[0].trusted_roots == ("Contoso-CA",)),
    ("clock-skew", CLIENT_NAME, 'clock_skew = "2 hours"', "client[0].clock_skew",
     "expected a time relative to the run", 'clock_skew = "-2h"',
     lambda s: s.clients[0].clock_skew == dt.timedelta(hours=-2)),
    ("url-retrieval", CLIENT_NAME, 'url_retrieval = "fast"', "client[0].url_retrieval",
     "expected one of 'per-url', 'accumulative', got 'fast'", 'url_retrieval = "accumulative"',
     lambda s: s.clients[0].url_retrieval == "accumulative"),
    ("client-cert-array-of-values", CLIENT_NAME, "cert = [1, 2]", "client[0].cert",
     "expected a [client.cert] table, [[client.cert]] tables", "cert = false",
     lambda s: s.clients[0].certs == ()),
]


@pytest.mark.parametrize(("anchor", "bad", "key", "fragment"),
                         [pytest.param(k[1], k[2], k[3], k[4], id=k[0]) for k in KNOBS])
def test_catalogue_knob_rejects_bad_values(anchor: str, bad: str, key: str,
                                           fragment: str) -> None:
    text = mutate(BASE, anchor, f"{anchor}\n{bad}")
    err = load_fails(text)
    assert err.key == key
    assert fragment in err.message
    first = bad.splitlines()[-1] if key.endswith(("crl_next_update", "not_after")) else \
        bad.splitlines()[0]
    assert err.line == line_of(text, first)


@pytest.mark.parametrize(("anchor", "good", "check"),
                         [pytest.param(k[1], k[5], k[6], id=k[0]) for k in KNOBS])
def test_catalogue_knob_twin_loads(anchor: str, good: str,
                                   check: Callable[[Scenario], bool]) -> None:
    assert check(load(mutate(BASE, anchor, f"{anchor}\n{good}")))


def test_mp_zone_is_checked_and_read() -> None:
    anchor = 'intranet_fqdn = "IBCM-Intra.contoso.local"'
    err = load_fails(mutate(BASE, anchor, f'{anchor}\nzone = "cloud"'))
    assert err.key == "mp.zone"
    assert "expected one of 'intranet', 'internet', 'vpn', 'dmz', got 'cloud'" in err.message
    s = load(mutate(BASE, anchor, f'{anchor}\nzone = "dmz"\ndomain_joined = false'))
    assert s.mp.zone is Zone.DMZ and s.mp.domain_joined is False


def test_several_client_certificates_load_in_order() -> None:
    certs = ('\n[[client.cert]]\nsubject = "first"\n\n[[client.cert]]\nsubject = "second"\n'
             'not_after = "+700d"\n')
    s = load(mutate(BASE, STEPS, certs + STEPS))
    assert [c.subject for c in s.clients[0].certs] == ["first", "second"]
    assert s.clients[0].certs[1].not_after == dt.timedelta(days=700)
    assert s.clients[0].cert is s.clients[0].certs[0]


def test_a_wildcard_san_loads() -> None:
    s = load(mutate(BASE, 'issuer = "Contoso-CA"\n',
                    'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "*.public.com"]\n'))
    assert s.mp.cert.san == ("IBCM-Intra.contoso.local", "*.public.com")


@pytest.mark.parametrize(("wildcard", "expected"), [
    ("*.com", "would cover a whole top-level domain"),
    ("m*.public.com", "must be the whole left-most label"),
    ("ibcm.*.com", "must be the whole left-most label"),
])
def test_unusable_wildcards_are_refused_with_the_key(wildcard: str, expected: str) -> None:
    text = mutate(BASE, 'issuer = "Contoso-CA"\n',
                  f'issuer = "Contoso-CA"\nsan = ["IBCM-Intra.contoso.local", "{wildcard}"]\n')
    err = load_fails(text)
    assert err.key == "mp.cert.san[1]" and err.line == line_of(text, "san = [")
    assert expected in err.message and repr(wildcard) in err.message
