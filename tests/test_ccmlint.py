"""Tests for lab.configmgr.lint: the ccmsetup command-line linter and ``ibcm-lab ccmsetup``
(and the quoting of lab.configmgr.winargs it writes corrected lines with).

The seed's line (seed §3) is the passing twin; each mistake of seed §3 is made one at a time and
must give exactly its finding, a corrected line equal to the seed's line, and that corrected
line must lint clean.
"""

from __future__ import annotations

import json
import random

import pytest

from lab.cli import main
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.configmgr.lint import Finding, LintReport, lint_ccmsetup
from lab.configmgr.winargs import (
    join_windows_command_line,
    quote_windows_argument,
    split_windows_command_line,
)
from lab.errors import CcmsetupSyntaxError, UsageError

SEED = (
    "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
    "SMSMP=https://IBCM-Intra.contoso.local CCMHOSTNAME=IBCM-Internet.public.com"
)
INTRA = "IBCM-Intra.contoso.local"
INTERNET = "IBCM-Internet.public.com"
SITE = {"site_code": "P01", "intranet_fqdn": INTRA, "internet_fqdn": INTERNET}
SITE_ARGS = ["--site-code", "P01", "--intranet-fqdn", INTRA, "--internet-fqdn", INTERNET]


def lint(line: str, **site: object) -> LintReport:
    kwargs = {**SITE, **site}
    return lint_ccmsetup(line, **kwargs)  # type: ignore[arg-type]


def seed_with(old: str, new: str) -> str:
    assert SEED.count(old) == 1, old
    return SEED.replace(old, new)


def only(report: LintReport) -> Finding:
    assert len(report.findings) == 1, report.codes
    return report.findings[0]


def check_invariants(report: LintReport, **site: object) -> None:
    """Every corrected line parses and no longer has the finding it fixes."""
    for f in report.findings:
        assert f.severity in ("error", "warning", "info")
        for text in (f.reason, f.fix, f.source):
            assert text and "\n" not in text
        if f.corrected is None:
            continue
        parse_ccmsetup(f.corrected)
        if f.corrected.strip():
            assert f.code not in lint(f.corrected, **site).codes, (f.code, f.corrected)
    if report.corrected is not None:
        parse_ccmsetup(report.corrected)
        if report.corrected.strip():
            again = lint(report.corrected, **site)
            assert all(f.corrected in (None, report.corrected) for f in again.findings), (
                report.corrected, again.codes)


# ------------------------------------------------------------------------------------------
# The seed's line and each of its mistakes
# ------------------------------------------------------------------------------------------


def test_seed_line_is_clean() -> None:
    report = lint(SEED)
    assert report.findings == ()
    assert report.exit_code == 0
    assert report.corrected == SEED


def test_seed_line_is_clean_without_site_options() -> None:
    report = lint_ccmsetup(SEED)
    assert report.findings == ()
    assert report.corrected == SEED


SEED_MISTAKES = [
    # (id, line, code, severity)
    ("drop /UsePKICert", seed_with("/UsePKICert ", ""), "missing-usepkicert", "error"),
    ("SMSMP without https://", seed_with("SMSMP=https://", "SMSMP="),
     "smsmp-without-https", "error"),
    ("SMSMP with http://", seed_with("SMSMP=https://", "SMSMP=http://"),
     "smsmp-without-https", "error"),
    ("drop CCMHOSTNAME", seed_with(f" CCMHOSTNAME={INTERNET}", ""),
     "missing-ccmhostname", "info"),
    ("CCMHOSTNAME with https://", seed_with("CCMHOSTNAME=", "CCMHOSTNAME=https://"),
     "ccmhostname-scheme", "error"),
    ("CCMHOSTNAME with a trailing slash", seed_with(INTERNET, INTERNET + "/"),
     "ccmhostname-path", "error"),
    ("SMSSITECODE=AUTO with CCMHOSTNAME", seed_with("=P01", "=AUTO"),
     "smssitecode-auto-with-ccmhostname", "error"),
    ("SMSSITECODE wrong", seed_with("=P01", "=P02"), "smssitecode-mismatch", "error"),
    ("SMSSITECODE missing", seed_with("SMSSITECODE=P01 ", ""), "missing-smssitecode", "error"),
    ("unknown property SMSSITCODE", seed_with("SMSSITECODE", "SMSSITCODE"),
     "unknown-property", "error"),
    ("unbalanced quote", seed_with("SMSMP=", 'SMSMP="'), "unbalanced-quote", "error"),
    ("lower-case smsmp", seed_with("SMSMP=", "smsmp="), "property-name-case", "warning"),
    ("drop /NoCRLCheck", seed_with("/NoCRLCheck ", ""), "missing-nocrlcheck", "info"),
]


@pytest.mark.parametrize(("line", "code", "severity"), [m[1:] for m in SEED_MISTAKES],
                         ids=[m[0] for m in SEED_MISTAKES])
def test_each_seed_mistake_gives_its_finding_and_the_seed_line(
        line: str, code: str, severity: str) -> None:
    report = lint(line)
    finding = only(report)
    assert (finding.code, finding.severity) == (code, severity)
    assert finding.corrected == SEED
    assert report.corrected == SEED
    assert lint(finding.corrected).findings == ()
    assert report.exit_code == (1 if severity == "error" else 0)


def test_unknown_property_reports_the_parsers_message() -> None:
    line = seed_with("SMSSITECODE", "SMSSITCODE")
    with pytest.raises(CcmsetupSyntaxError) as info:
        parse_ccmsetup(line)
    finding = only(lint(line))
    assert finding.reason == info.value.message
    assert "did you mean 'SMSSITECODE'" in finding.reason
    assert finding.fix == "write SMSSITECODE (the documented spelling)"


def test_unbalanced_quote_reports_the_parsers_message_and_closes_it() -> None:
    line = seed_with("SMSMP=", 'SMSMP="')
    finding = only(lint(line))
    assert finding.reason.startswith("unbalanced double quote: the quote at column ")
    assert finding.fix == "close the quote before the next argument"


def test_parameter_after_property_is_moved_before_the_properties() -> None:
    # Documented otherwise: the moved parameter lands before the first property, after
    # /NoCRLCheck, so the corrected line is the seed's line with the two flags swapped.
    line = seed_with("/UsePKICert ", "") + " /UsePKICert"
    finding = only(lint(line))
    assert (finding.code, finding.severity) == ("parameter-after-property", "warning")
    assert "comes after the client.msi property 'SMSSITECODE=P01'" in finding.reason
    swapped = seed_with("/UsePKICert /NoCRLCheck", "/NoCRLCheck /UsePKICert")
    assert finding.corrected == swapped
    assert lint(swapped).findings == ()


def test_repeated_parameters_after_a_property_keep_their_order() -> None:
    line = r"ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 /source: D:\a /source:D:\b"
    finding = only(lint_ccmsetup(line))
    assert finding.code == "parameter-after-property"
    assert finding.corrected == (
        r"ccmsetup.exe /UsePKICert /NoCRLCheck /source: D:\a /source:D:\b SMSSITECODE=P01")
    assert parse_ccmsetup(finding.corrected).source == ("D:\\a", "D:\\b")


def test_several_mistakes_at_once_are_all_fixed() -> None:
    line = ("ccmsetup.exe SMSSITECODE=AUTO smsmp=IBCM-Intra.contoso.local "
            "CCMHOSTNAME=https://IBCM-Internet.public.com/")
    report = lint(line)
    assert report.codes == (
        "missing-usepkicert", "smsmp-without-https", "smssitecode-auto-with-ccmhostname",
        "ccmhostname-scheme", "ccmhostname-path", "missing-nocrlcheck", "property-name-case",
    )
    assert report.exit_code == 1
    assert report.corrected == SEED
    check_invariants(report)


# ------------------------------------------------------------------------------------------
# Site-dependent findings
# ------------------------------------------------------------------------------------------


def test_https_or_http_site_accepts_smsmp_without_scheme() -> None:
    line = seed_with("SMSMP=https://", "SMSMP=")
    assert lint(line, https_only=False).findings == ()
    # CCMHOSTNAME still needs /UsePKICert: the internet MP is HTTPS.
    report = lint(seed_with("/UsePKICert ", ""), https_only=False)
    assert only(report).code == "missing-usepkicert"
    assert "CCMHOSTNAME names an internet MP" in report.findings[0].reason
    intranet_http = "ccmsetup.exe SMSSITECODE=P01 SMSMP=IBCM-Intra.contoso.local"
    assert lint(intranet_http, https_only=False, internet_fqdn=None).findings == ()


def test_smsmplist_entries_need_https() -> None:
    line = SEED + " SMSMPLIST=mp1.contoso.local;https://mp2.contoso.local"
    finding = only(lint(line))
    assert finding.code == "smsmplist-without-https"
    assert "mp1.contoso.local" in finding.reason and "mp2" not in finding.reason
    assert finding.corrected == (
        SEED + " SMSMPLIST=https://mp1.contoso.local;https://mp2.contoso.local")


def test_smsmp_naming_another_host_is_a_warning() -> None:
    report = lint(seed_with(f"SMSMP=https://{INTRA}", "SMSMP=https://mp9.contoso.local"))
    finding = only(report)
    assert (finding.code, finding.severity) == ("smsmp-host-mismatch", "warning")
    assert finding.corrected == SEED
    assert report.exit_code == 0
    internet = only(lint(seed_with(f"SMSMP=https://{INTRA}", f"SMSMP=https://{INTERNET}")))
    assert "the internet FQDN, which belongs in CCMHOSTNAME" in internet.reason


def test_ccmhostname_naming_the_intranet_fqdn_is_an_error() -> None:
    finding = only(lint(seed_with(f"CCMHOSTNAME={INTERNET}", f"CCMHOSTNAME={INTRA}")))
    assert (finding.code, finding.severity) == ("ccmhostname-mismatch", "error")
    assert finding.corrected == SEED


def test_ccmhostname_naming_another_host_is_a_warning() -> None:
    finding = only(lint(seed_with(INTERNET, "ibcm2.public.com")))
    assert (finding.code, finding.severity) == ("ccmhostname-mismatch", "warning")
    assert finding.corrected == SEED


def test_ccmhostname_with_port_and_path() -> None:
    report = lint(seed_with(INTERNET, INTERNET + ":443/ccm_system"))
    assert report.codes == ("ccmhostname-path", "ccmhostname-port")
    assert report.corrected == SEED
    check_invariants(report)


def test_ccmhostname_cmg_value_keeps_its_path_but_not_a_scheme() -> None:
    cmg = "contoso.cloudapp.net/CCM_Proxy_MutualAuth/72057594037927940"
    line = seed_with(f"CCMHOSTNAME={INTERNET}", f"CCMHOSTNAME={cmg}")
    assert lint(line, internet_fqdn=None).findings == ()
    finding = only(lint(seed_with(f"CCMHOSTNAME={INTERNET}", f"CCMHOSTNAME=https://{cmg}"),
                        internet_fqdn=None))
    assert finding.code == "ccmhostname-scheme"
    assert finding.corrected == line


def test_site_code_missing_without_the_site_code_has_no_corrected_line() -> None:
    report = lint(seed_with("SMSSITECODE=P01 ", ""), site_code=None)
    finding = only(report)
    assert finding.code == "missing-smssitecode"
    assert finding.corrected is None
    assert "--site-code" in finding.fix
    assert report.corrected == seed_with("SMSSITECODE=P01 ", "")


def test_site_code_auto_on_an_intranet_line_is_info() -> None:
    line = "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=AUTO SMSMP=https://IBCM-Intra.contoso.local"
    report = lint(line, internet_fqdn=None)
    assert [(f.code, f.severity) for f in report.findings] == [("smssitecode-auto", "info")]
    assert report.exit_code == 0


def test_site_code_comparison_ignores_case() -> None:
    assert lint(seed_with("=P01", "=p01")).findings == ()


def test_always_internet_client_needs_ccmhostname_usepkicert_and_a_site_code() -> None:
    line = "ccmsetup.exe /NoCRLCheck SMSSITECODE=AUTO CCMALWAYSINF=1"
    report = lint(line)
    assert report.codes == (
        "missing-usepkicert", "smssitecode-auto-with-ccmhostname",
        "alwaysinf-without-ccmhostname",
    )
    assert "CCMALWAYSINF=1 must be used with /UsePKICert" in report.findings[0].reason
    assert report.corrected == (
        "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
        "CCMHOSTNAME=IBCM-Internet.public.com CCMALWAYSINF=1"
    )
    check_invariants(report)
    unknown = lint(line, internet_fqdn=None)
    always = [f for f in unknown.findings if f.code == "alwaysinf-without-ccmhostname"]
    assert always[0].corrected is None and "--internet-fqdn" in always[0].fix


def test_mp_switch_scheme_rules() -> None:
    plain = "ccmsetup.exe /mp:https://IBCM-Intra.contoso.local /UsePKICert /NoCRLCheck " \
            "SMSSITECODE=P01 SMSMP=https://IBCM-Intra.contoso.local " \
            "CCMHOSTNAME=IBCM-Internet.public.com"
    finding = only(lint(plain))
    assert (finding.code, finding.severity) == ("mp-https-not-cmg", "info")
    assert finding.corrected == plain.replace("/mp:https://", "/mp:")
    cmg = "contoso.cloudapp.net/CCM_Proxy_MutualAuth/72057594037927940"
    with_cmg = plain.replace("https://IBCM-Intra.contoso.local /", f"https://{cmg} /", 1)
    assert lint(with_cmg).findings == ()
    bare_cmg = only(lint(with_cmg.replace("/mp:https://", "/mp:")))
    assert (bare_cmg.code, bare_cmg.severity) == ("mp-cmg-without-https", "error")
    assert bare_cmg.corrected == with_cmg


def test_doc_examples_lint_without_errors() -> None:
    # memdocs deploy-clients-to-windows-computers.md (reference §1.4)
    intranet = ("CCMSetup.exe /MP:mpserver.contoso.com /UsePKICert SMSSITECODE=ABC "
                "CCMHOSTNAME=server05.contoso.com CCMFIRSTCERT=1 FSP=server06.constoso.com")
    report = lint_ccmsetup(intranet)
    assert report.codes == ("missing-nocrlcheck",)
    internet = (r"CCMSetup.exe /source: D:\Clients /UsePKICert CCMHOSTNAME=server1.contoso.com "
                "SMSSIGNCERT=siteserver.cer SMSSITECODE=ABC FSP=server2.contoso.com "
                "CCMALWAYSINF=1 CCMFIRSTCERT=1")
    report = lint_ccmsetup(internet)
    assert report.codes == ("missing-nocrlcheck",)
    assert report.corrected == internet.replace("/UsePKICert", "/UsePKICert /NoCRLCheck")
    assert parse_ccmsetup(report.corrected).source == (r"D:\Clients",)


# ------------------------------------------------------------------------------------------
# Syntax repairs: Windows quoting mistakes and misspelt names
# ------------------------------------------------------------------------------------------


def test_backslash_before_closing_quote() -> None:
    line = r'ccmsetup.exe /source:"C:\Client Files\" /UsePKICert /NoCRLCheck SMSSITECODE=P01'
    report = lint_ccmsetup(line)
    finding = only(report)
    assert finding.code == "unbalanced-quote"
    assert "makes it a literal quote" in finding.reason
    assert finding.fix.startswith("double the backslash")
    assert finding.corrected == line.replace('Files\\"', 'Files\\\\"')
    assert parse_ccmsetup(finding.corrected).source == ("C:\\Client Files\\",)


def test_unclosed_quote_at_the_end_is_closed_there() -> None:
    line = 'ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 CCMCERTSEL="SubjectStr:Contoso Ltd'
    finding = only(lint_ccmsetup(line))
    assert finding.fix == "close the quote at the end of the line"
    assert finding.corrected == line + '"'


def test_unquoted_value_with_a_space() -> None:
    line = r"ccmsetup.exe /source:C:\Client Files /UsePKICert /NoCRLCheck SMSSITECODE=P01"
    finding = only(lint_ccmsetup(line))
    assert finding.code == "unquoted-space"
    assert finding.reason.startswith("unexpected argument 'Files'")
    assert finding.corrected == (
        r'ccmsetup.exe /source:"C:\Client Files" /UsePKICert /NoCRLCheck SMSSITECODE=P01')


def test_unquoted_value_with_several_spaces_is_one_finding() -> None:
    line = ("ccmsetup.exe /UsePKICert /NoCRLCheck CCMCERTISSUERS=CN=Contoso Root CA; O=Contoso "
            "SMSSITECODE=P01")
    finding = only(lint_ccmsetup(line))
    assert finding.code == "unquoted-space"
    assert finding.reason.startswith("unexpected argument 'Root'")
    assert finding.corrected == (
        'ccmsetup.exe /UsePKICert /NoCRLCheck CCMCERTISSUERS="CN=Contoso Root CA; O=Contoso" '
        "SMSSITECODE=P01")


def test_stray_word_after_a_host_name_is_not_glued_to_it() -> None:
    report = lint(SEED + " please")
    assert report.codes == ("unexpected-argument",)
    assert report.corrected == SEED


def test_unquoted_program_path_with_a_space() -> None:
    line = r"C:\Program Files\Client\ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01"
    finding = only(lint_ccmsetup(line))
    assert finding.code == "unquoted-space"
    assert finding.corrected == '"C:\\Program Files\\Client\\ccmsetup.exe"' + line[36:]


def test_typographic_quotes_and_dashes() -> None:
    line = ("ccmsetup.exe \u2013UsePKICert /NoCRLCheck SMSSITECODE=P01 "
            "CCMCERTSEL=\u201cSubjectStr:Contoso Ltd\u201d")
    report = lint_ccmsetup(line)
    assert report.codes == ("typographic-quote", "dash-parameter")
    expected = ('ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 '
                'CCMCERTSEL="SubjectStr:Contoso Ltd"')
    assert all(f.corrected == expected for f in report.findings)
    assert report.corrected == expected


def test_single_quotes_are_not_quotes_on_windows() -> None:
    line = "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 CCMCERTSEL='SubjectStr:Contoso'"
    finding = only(lint_ccmsetup(line))
    assert (finding.code, finding.severity) == ("single-quoted-value", "error")
    assert finding.corrected == line.replace("'", "")


def test_escaped_quote_left_in_a_value() -> None:
    line = 'ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 CCMCERTSEL=\\"SubjectStr:C\\"'
    finding = only(lint_ccmsetup(line))
    assert (finding.code, finding.severity) == ("literal-quote-in-value", "warning")
    assert finding.corrected == line.replace('\\"', "")


def test_line_break_in_the_line() -> None:
    finding = only(lint(SEED.replace(" SMSSITECODE", "\nSMSSITECODE")))
    assert finding.code == "line-break"
    assert finding.corrected == SEED


@pytest.mark.parametrize(
    ("broken", "code", "fix"),
    [
        ("/UsePKICerts", "unknown-parameter", "write /UsePKICert (the documented spelling)"),
        ("/UsePKICert=1", "parameter-with-equals", "write /UsePKICert"),
        ("/UsePKICert:yes", "unexpected-value", "write /UsePKICert alone"),
        ("-UsePKICert", "dash-parameter", "write /UsePKICert: ccmsetup parameters start with '/'"),
        ("USEPKICERT=1", "parameter-as-property", "write /UsePKICert before the properties"),
    ],
)
def test_misspelt_usepkicert_is_repaired(broken: str, code: str, fix: str) -> None:
    report = lint(seed_with("/UsePKICert", broken))
    finding = only(report)
    assert (finding.code, finding.fix) == (code, fix)
    expected = SEED
    if code == "parameter-as-property":  # moved before the first property, after /NoCRLCheck
        expected = seed_with("/UsePKICert /NoCRLCheck", "/NoCRLCheck /UsePKICert")
    assert finding.corrected == expected
    assert lint(expected).findings == ()


@pytest.mark.parametrize(
    ("broken", "replacement", "code"),
    [
        ("SMSSITECODE=P0", "SMSSITECODE=P01", "bad-value"),
        ("SMSSITECODE=", "SMSSITECODE=P01", "missing-value"),
        ("/SMSSITECODE:P01", "", "property-as-parameter"),
        ("/SMSSITECODE=P01", "", "property-as-parameter"),
    ],
)
def test_repairs_that_use_the_site(broken: str, replacement: str, code: str) -> None:
    finding = only(lint(seed_with("SMSSITECODE=P01", broken)))
    assert finding.code == code
    if replacement:
        assert finding.corrected == SEED
    else:  # moved after the other properties
        assert finding.corrected == seed_with("SMSSITECODE=P01 ", "") + " SMSSITECODE=P01"


def test_stray_words_duplicates_and_unknown_names_are_dropped() -> None:
    line = SEED + " please FOO=1 /bogus FSP=a FSP=b"
    report = lint(line)
    assert report.codes == (
        "unexpected-argument", "unknown-property", "unknown-parameter", "duplicate")
    expected = SEED + " FSP=a"
    assert all(f.corrected == expected for f in report.findings)
    assert report.corrected == expected
    assert report.findings[0].fix == "remove 'please' (not a /parameter or a NAME=value property)"


def test_ccmsetup_msi_property_is_unwrapped() -> None:
    line = 'ccmsetup.exe CCMSETUPCMD="/UsePKICert /NoCRLCheck SMSSITECODE=P01"'
    finding = only(lint_ccmsetup(line))
    assert finding.code == "ccmsetup-msi-property"
    assert finding.corrected == "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01"


def test_wrong_program_is_replaced() -> None:
    finding = only(lint(seed_with("ccmsetup.exe", "setup.exe")))
    assert finding.code == "wrong-program"
    assert finding.corrected == SEED


def test_unrepairable_syntax_error_is_an_error_without_a_corrected_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # No repair is known for every conceivable refusal; simulate one the linter cannot place.
    import lab.configmgr.lint.syntax

    monkeypatch.setattr(lab.configmgr.lint.syntax, "_culprit",
                        lambda tokens, message, hint=None: None)
    line = seed_with("SMSSITECODE", "SMSSITCODE")
    report = lint(line)
    finding = only(report)
    assert (finding.code, finding.severity, finding.corrected) == ("syntax-error", "error", None)
    assert finding.reason.startswith("unknown client.msi property 'SMSSITCODE'")
    assert report.corrected is None and report.exit_code == 1
    code, out, _ = cli(capsys, line, *SITE_ARGS)
    assert code == 1
    assert out.splitlines()[-2:] == [
        "Corrected:", "(none: a syntax error could not be repaired automatically)"]


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_empty_line_is_unusable(line: str) -> None:
    with pytest.raises(UsageError, match="the ccmsetup command line is empty"):
        lint_ccmsetup(line)


def test_line_with_nothing_of_ccmsetup_is_unusable() -> None:
    with pytest.raises(UsageError, match="is not a ccmsetup command line"):
        lint_ccmsetup("hello world")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"site_code": "P0"}, "--site-code expects a 3-character site code"),
        ({"intranet_fqdn": "https://mp1"}, "--intranet-fqdn expects a host name (without"),
        ({"internet_fqdn": "a b"}, "--internet-fqdn expects a host name, got 'a b'"),
    ],
)
def test_bad_site_options(option: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        lint_ccmsetup(SEED, **option)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Windows quoting: join is the inverse of split
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", "plain"),
        (r"C:\dir\file", r"C:\dir\file"),
        ("", '""'),
        ("a b", '"a b"'),
        ('a"b', r'"a\"b"'),
        ("C:\\Client Files\\", '"C:\\Client Files\\\\"'),
        ('x\\"y', '"x\\\\\\"y"'),
        ("tab\there", '"tab\there"'),
    ],
)
def test_quote_windows_argument(arg: str, quoted: str) -> None:
    assert quote_windows_argument(arg) == quoted
    assert split_windows_command_line(quoted) == [arg]


@pytest.mark.parametrize(
    ("tokens", "line"),
    [
        (["ccmsetup.exe", "/UsePKICert"], "ccmsetup.exe /UsePKICert"),
        ([r"/source:C:\Client Files"], r'/source:"C:\Client Files"'),
        (["CCMCERTSEL=SubjectAttr:OU = Computers"], 'CCMCERTSEL="SubjectAttr:OU = Computers"'),
        ([r"/source:C:\Client Files" + "\\"], '/source:"C:\\Client Files\\\\"'),
        ([r"C:\Program Files\ccmsetup.exe"], r'"C:\Program Files\ccmsetup.exe"'),
        (['CCMCERTSEL=Subject:a"b'], r'CCMCERTSEL="Subject:a\"b"'),
        (["FSP="], "FSP="),
        (["x", "", "y"], 'x "" y'),
        (["a b=c"], '"a b=c"'),
    ],
)
def test_join_windows_command_line(tokens: list[str], line: str) -> None:
    assert join_windows_command_line(tokens) == line
    assert split_windows_command_line(line) == tokens


def test_join_then_split_round_trips_random_arguments() -> None:
    rnd = random.Random(5)
    alphabet = 'ab \\"\t=:/'
    for _ in range(2000):
        tokens = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8)))
                  for _ in range(rnd.randint(0, 4))]
        assert split_windows_command_line(join_windows_command_line(tokens)) == tokens


# ------------------------------------------------------------------------------------------
# Robustness: any line gives findings, never an exception; every corrected line parses
# ------------------------------------------------------------------------------------------

VOCABULARY = [
    "ccmsetup.exe", "/UsePKICert", "/NoCRLCheck", "SMSSITECODE=P01", "SMSSITECODE=AUTO",
    "SMSSITCODE=P01", "SMSMP=https://a.b", "SMSMP=a.b", "smsmp=x.y", "CCMHOSTNAME=https://i.p/",
    "CCMHOSTNAME=i.p:443", "CCMALWAYSINF=1", "CCMALWAYSINF=yes", '"', "'", "\\", '\\"',
    "\u201c", "\u2013mp:x", "/mp:https://x", "/mp:cmg.cloudapp.net/CCM_Proxy_MutualAuth/1",
    "/source:", "C:\\a b\\", "please", "FSP=a", "FSP=", "/retry:x", "SMSMPLIST=a;https://b",
    "SMSMPLIST=a;;b", '/source:"C:\\x y\\"', 'CCMSETUPCMD="/mp:x"', "NOCRLCHECK=1",
    "/SMSSITECODE=P01", "/bogus", "/UsePKICert=1", "CCMCERTSEL='SubjectStr:x y'",
    "SMSMP=ldap://x/y", "=", "\n", "CCMALLOWSILENTREBOOT", '""',
    "CCMHOSTNAME=cmg.cloudapp.net/CCM_Proxy_MutualAuth/5", "/source: D:\\x", "/config:",
    "SMSSITECODE=p01", "CCMHOSTNAME=a.b", "CCMHOSTNAME=i.p/x", "-UsePKICert", "C:\\Program",
    "Files\\ccmsetup.exe", "CCMCERTISSUERS=CN=a", "b", "O=c", "\t", "SMSMP=https://i.p",
    "/mp:a.b;https://c.d", "/MP:", 'CCMHOSTNAME="i.p"', "SMSSITECODE='P01'",
]


def test_random_lines_never_raise_and_corrections_hold() -> None:
    rnd = random.Random(11)
    linted = 0
    for _ in range(200):
        line = " ".join(rnd.choice(VOCABULARY) for _ in range(rnd.randint(1, 7)))
        site = {"site_code": rnd.choice([None, "P01"]),
                "intranet_fqdn": rnd.choice([None, "a.b"]),
                "internet_fqdn": rnd.choice([None, "i.p"]),
                "https_only": rnd.random() < 0.7}
        try:
            report = lint_ccmsetup(line, **site)  # type: ignore[arg-type]
        except UsageError:
            continue
        linted += 1
        assert report.corrected is not None, line
        check_invariants(report, **site)
    assert linted > 150


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ccmsetup", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text_clean_line_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, SEED, *SITE_ARGS)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"ccmsetup line  {SEED}"
    assert "No findings: the line fits the site." in lines
    assert lines[-2:] == ["Corrected:", SEED]


def test_cli_text_error_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, seed_with("SMSMP=https://", "SMSMP="), *SITE_ARGS)
    assert (code, err) == (1, "")
    assert "ERROR    smsmp-without-https: SMSMP=IBCM-Intra.contoso.local has no scheme" in out
    assert f"    corrected  {SEED}" in out
    assert "1 error, 0 warnings, 0 info" in out
    assert out.splitlines()[-2:] == ["Corrected:", SEED]


def test_cli_info_only_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, seed_with(f" CCMHOSTNAME={INTERNET}", ""), *SITE_ARGS)
    assert code == 0
    assert "INFO     missing-ccmhostname:" in out


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    line = seed_with("SMSSITECODE", "SMSSITCODE")
    code, out, err = cli(capsys, line, *SITE_ARGS, "--format", "json")
    assert (code, err) == (1, "")
    data = json.loads(out)
    assert set(data) == {"line", "site", "findings", "corrected"}
    assert data["line"] == line
    assert data["corrected"] == SEED
    assert data["site"] == {"site_code": "P01", "intranet_fqdn": INTRA,
                            "internet_fqdn": INTERNET, "https_only": True}
    [finding] = data["findings"]
    assert set(finding) == {"severity", "code", "reason", "fix", "source", "corrected"}
    assert (finding["severity"], finding["code"], finding["corrected"]) == (
        "error", "unknown-property", SEED)


def test_cli_json_clean_and_https_or_http(capsys: pytest.CaptureFixture[str]) -> None:
    line = seed_with("SMSMP=https://", "SMSMP=")
    code, out, _ = cli(capsys, line, *SITE_ARGS, "--https-or-http", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["findings"] == [] and data["corrected"] == line
    assert data["site"]["https_only"] is False


def test_cli_malformed_line_is_a_finding_not_a_failure(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, seed_with("SMSMP=", 'SMSMP="'), *SITE_ARGS)
    assert (code, err) == (1, "")
    assert "ERROR    unbalanced-quote: unbalanced double quote" in out
    assert out.splitlines()[-1] == SEED


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["  "], "the ccmsetup command line is empty"),
        (["hello world"], "is not a ccmsetup command line"),
        ([SEED, "--site-code", "P0001"], "--site-code expects a 3-character site code"),
    ],
)
def test_cli_unusable_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                                    message: str) -> None:
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("ibcm-lab: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
