"""lab.names: the one home of the rules for host names, site codes, domains and URL text."""

from __future__ import annotations

import pytest

from lab.names import (
    host_matches,
    in_domain,
    is_ccm_host,
    is_dns_name,
    is_internal_name,
    is_printable_url,
    is_site_code,
    is_wildcard_name,
    wildcard_problem,
)


@pytest.mark.parametrize(("name", "ok"), [
    ("IBCM-Intra.contoso.local", True), ("a", True), ("x" * 63 + ".com", True),
    ("x" * 64 + ".com", False), ("-bad.com", False), ("bad-.com", False), ("a..b", False),
    ("under_score.com", False), ("", False), ("host.", False), (".".join(["a" * 63] * 4), False),
])
def test_dns_names(name: str, ok: bool) -> None:
    assert is_dns_name(name) is ok


def test_a_root_dot_only_where_it_is_allowed() -> None:
    assert not is_dns_name("ibcm.public.com.")
    assert is_dns_name("ibcm.public.com.", allow_root_dot=True)
    assert not is_dns_name(".", allow_root_dot=True)


@pytest.mark.parametrize(("host", "ok"), [
    ("IBCM-Intra.contoso.local", True), ("SCCM_01", True), ("mp.contoso.com.", True),
    ("mp:443", False), ("https://mp", False), ("mp/path", False), ("", False),
])
def test_ccmsetup_hosts(host: str, ok: bool) -> None:
    assert is_ccm_host(host) is ok


@pytest.mark.parametrize(("code", "ok"), [("P01", True), ("abc", True), ("P1", False),
                                          ("P012", False), ("P-1", False)])
def test_site_codes(code: str, ok: bool) -> None:
    assert is_site_code(code) is ok


@pytest.mark.parametrize(("host", "domain", "ok"), [
    ("pc01.contoso.local", "contoso.local", True), ("PC01.CONTOSO.LOCAL.", "contoso.local", True),
    ("contoso.local", "contoso.local", True), ("pc01.notcontoso.local", "contoso.local", False),
    ("pc01.contoso.local", None, False), ("pc01.contoso.local", "", False),
])
def test_domain_membership(host: str, domain: str | None, ok: bool) -> None:
    assert in_domain(host, domain) is ok


@pytest.mark.parametrize(("url", "ok"), [
    ("http://ca01.contoso.local/CertEnroll/Contoso-CA.crl", True),
    ("ldap:///CN=Contoso-CA,CN=Public%20Key%20Services", True),
    ("ldap:///CN=Contoso-CA,CN=Public Key Services", False), ("http://é.com/x.crl", False),
    ("http://a/\tb", False),
])
def test_printable_urls(url: str, ok: bool) -> None:
    assert is_printable_url(url) is ok


# A wildcard covers exactly one left-most label, as Windows matches it label by label and
# OpenSSL's check with NO_PARTIAL_WILDCARDS does (reference §3.6).
@pytest.mark.parametrize(("host", "name", "ok"), [
    ("mp.fabrikam.com", "*.fabrikam.com", True),
    ("MP.Fabrikam.COM.", "*.fabrikam.com", True),
    ("fabrikam.com", "*.fabrikam.com", False),
    ("a.b.fabrikam.com", "*.fabrikam.com", False),
    ("mp.fabrikam.com", "m*.fabrikam.com", False),
    ("fabrikam.com", "*.com", False),
    ("mp.fabrikam.com", "mp.fabrikam.com", True),
    ("mp.fabrikam.com", "mp.fabrikam.com.", True),
    ("*.fabrikam.com", "*.fabrikam.com", True),
])
def test_wildcards_cover_one_left_most_label(host: str, name: str, ok: bool) -> None:
    assert host_matches(host, name) is ok


@pytest.mark.parametrize(("name", "problem"), [
    ("*.fabrikam.com", None), ("*.ibcm.public.com.", None),
    ("*.com", "two labels after it"), ("m*.fabrikam.com", "whole left-most label"),
    ("a.*.fabrikam.com", "whole left-most label"), ("*.*.fabrikam.com", "only one '*'"),
    ("*.-bad.com", "expected a DNS host name"),
])
def test_wildcard_problems_say_what_is_wrong(name: str, problem: str | None) -> None:
    got = wildcard_problem(name)
    assert (got is None) if problem is None else (got is not None and problem in got)
    assert is_wildcard_name(name) is (problem is None)


@pytest.mark.parametrize(("name", "internal"), [
    ("IBCM-Intra.contoso.local", True), ("SCCM01", True), ("mp.corp", True),
    ("mp.contoso.internal.", True), ("*.contoso.local", True),
    ("IBCM-Intra.corp.public.com", False), ("IBCM-Internet.public.com", False),
    ("mp.localhost.example.com", False),
])
def test_internal_names(name: str, internal: bool) -> None:
    assert is_internal_name(name) is internal
