"""Tests for lab.configmgr.ccmsetup: Windows argument splitting and ccmsetup/client.msi parsing.

Every rejected line has a passing twin, so a green run shows each check is active and aimed.
"""

from __future__ import annotations

import dataclasses
import re
from types import MappingProxyType

import pytest

from lab.configmgr.ccmsetup import (
    KNOWN_PARAMETERS,
    KNOWN_PROPERTIES,
    CcmsetupCommand,
    MpAddress,
    parse_ccmsetup,
)
from lab.configmgr.winargs import split_windows_command_line
from lab.errors import CcmsetupSyntaxError, ScenarioError

SEED = (
    "ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
    "SMSMP=https://IBCM-Intra.contoso.local CCMHOSTNAME=IBCM-Internet.public.com"
)
# Learn deploy-clients-to-windows-computers, "Internet-based client management" (reference §1.4)
DOC_INTRANET = (
    "CCMSetup.exe /MP:mpserver.contoso.com /UsePKICert SMSSITECODE=ABC "
    "CCMHOSTNAME=server05.contoso.com CCMFIRSTCERT=1 FSP=server06.constoso.com"
)
DOC_INTERNET = (
    r"CCMSetup.exe /source: D:\Clients /UsePKICert CCMHOSTNAME=server1.contoso.com "
    "SMSSIGNCERT=siteserver.cer SMSSITECODE=ABC FSP=server2.contoso.com CCMALWAYSINF=1 "
    "CCMFIRSTCERT=1"
)


def fails(line: str, *fragments: str) -> CcmsetupSyntaxError:
    """Parse ``line``, expect a CcmsetupSyntaxError whose message holds every fragment."""
    with pytest.raises(CcmsetupSyntaxError, match=re.escape(fragments[0])) as info:
        parse_ccmsetup(line)
    err = info.value
    for fragment in fragments[1:]:
        assert fragment in err.message, (fragment, err.message)
    assert "\n" not in err.message
    assert err.file is None and err.key is None and err.line is None
    return err


# ------------------------------------------------------------------------------------------
# Whole lines
# ------------------------------------------------------------------------------------------


def test_seed_line() -> None:
    cmd = parse_ccmsetup(SEED)
    assert cmd.raw == SEED
    assert cmd.program == "ccmsetup.exe"
    assert dict(cmd.switches) == {"UsePKICert": None, "NoCRLCheck": None}
    assert dict(cmd.properties) == {
        "SMSSITECODE": "P01",
        "SMSMP": "https://IBCM-Intra.contoso.local",
        "CCMHOSTNAME": "IBCM-Internet.public.com",
    }
    assert cmd.use_pki_cert is True
    assert cmd.no_crl_check is True
    assert cmd.mp == ()
    assert cmd.source == ()
    assert cmd.site_code == "P01"
    assert cmd.smsmp == MpAddress(
        scheme="https", host="IBCM-Intra.contoso.local", raw="https://IBCM-Intra.contoso.local"
    )
    assert cmd.smsmp is not None and cmd.smsmp.https
    assert cmd.smsmplist == ()
    assert cmd.ccmhostname == "IBCM-Internet.public.com"
    assert cmd.always_internet is False
    assert cmd.cert_selection is None
    assert cmd.first_cert is False
    assert cmd.fsp is None


def test_doc_example_intranet_client_with_internet_fqdn() -> None:
    cmd = parse_ccmsetup(DOC_INTRANET)
    assert cmd.program == "CCMSetup.exe"
    assert dict(cmd.switches) == {"mp": "mpserver.contoso.com", "UsePKICert": None}
    assert dict(cmd.properties) == {
        "SMSSITECODE": "ABC",
        "CCMHOSTNAME": "server05.contoso.com",
        "CCMFIRSTCERT": "1",
        "FSP": "server06.constoso.com",
    }
    assert cmd.use_pki_cert is True
    assert cmd.no_crl_check is False
    assert cmd.mp == (
        MpAddress(scheme=None, host="mpserver.contoso.com", raw="mpserver.contoso.com"),
    )
    assert not cmd.mp[0].https
    assert cmd.source == ()
    assert cmd.site_code == "ABC"
    assert cmd.smsmp is None
    assert cmd.smsmplist == ()
    assert cmd.ccmhostname == "server05.contoso.com"
    assert cmd.always_internet is False
    assert cmd.cert_selection is None
    assert cmd.first_cert is True
    assert cmd.fsp == "server06.constoso.com"


def test_doc_example_internet_only_client_from_source_with_space_after_colon() -> None:
    cmd = parse_ccmsetup(DOC_INTERNET)
    assert cmd.program == "CCMSetup.exe"
    assert dict(cmd.switches) == {"source": r"D:\Clients", "UsePKICert": None}
    assert dict(cmd.properties) == {
        "CCMHOSTNAME": "server1.contoso.com",
        "SMSSIGNCERT": "siteserver.cer",
        "SMSSITECODE": "ABC",
        "FSP": "server2.contoso.com",
        "CCMALWAYSINF": "1",
        "CCMFIRSTCERT": "1",
    }
    assert cmd.use_pki_cert is True
    assert cmd.no_crl_check is False
    assert cmd.mp == ()
    assert cmd.source == (r"D:\Clients",)
    assert cmd.site_code == "ABC"
    assert cmd.smsmp is None
    assert cmd.smsmplist == ()
    assert cmd.ccmhostname == "server1.contoso.com"
    assert cmd.always_internet is True
    assert cmd.cert_selection is None
    assert cmd.first_cert is True
    assert cmd.fsp == "server2.contoso.com"


def test_doc_general_example() -> None:
    cmd = parse_ccmsetup("CCMSetup.exe /mp:SMSMP01 /logon SMSSITECODE=S01 FSP=SMSFSP01")
    assert dict(cmd.switches) == {"mp": "SMSMP01", "logon": None}
    assert cmd.mp == (MpAddress(scheme=None, host="SMSMP01", raw="SMSMP01"),)
    assert cmd.site_code == "S01"
    assert cmd.fsp == "SMSFSP01"


def test_doc_cmg_token_example_with_parameters_first() -> None:
    # The doc's own /regtoken example puts /regtoken after the properties and spells
    # SMSSiteCode in mixed case; both are rejected below. This is the corrected order.
    cmg = "CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72186325152220500"
    cmd = parse_ccmsetup(
        f"ccmsetup.exe /mp:https://{cmg} /regtoken:eyJ0eXAi.eyJTQ0NN.ZUJkxCX6 "
        f"CCMHOSTNAME={cmg} SMSSITECODE=ABC SMSMP=https://mp1.contoso.com"
    )
    assert cmd.mp == (MpAddress(scheme="https", host="CONTOSO.CLOUDAPP.NET", raw=f"https://{cmg}"),)
    assert cmd.switches["regtoken"] == "eyJ0eXAi.eyJTQ0NN.ZUJkxCX6"
    assert cmd.ccmhostname == cmg
    assert cmd.smsmp == MpAddress("https", "mp1.contoso.com", "https://mp1.contoso.com")


def test_doc_cmg_token_example_as_printed_parses_with_notes() -> None:
    # Microsoft prints /regtoken after the properties and SMSSiteCode in mixed case, so
    # ccmsetup accepts both; the lab accepts them too and notes the deviation for the linter.
    cmd = parse_ccmsetup(
        "ccmsetup.exe /mp:https://CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/1 "
        "CCMHOSTNAME=CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/1 SMSSiteCode=ABC "
        "SMSMP=https://mp1.contoso.com /regtoken:eyJ0eXAi"
    )
    assert cmd.switches["regtoken"] == "eyJ0eXAi"
    assert cmd.site_code == "ABC"
    assert any("'/regtoken:eyJ0eXAi' comes after the client.msi property" in n for n in cmd.notes)
    assert any("'SMSSiteCode' is documented in upper case as SMSSITECODE" in n
               for n in cmd.notes)
    # the negative control: the documented order and spelling carry no notes
    assert parse_ccmsetup(SEED).notes == ()


def test_command_is_frozen_and_its_mappings_are_read_only() -> None:
    cmd = parse_ccmsetup(SEED)
    assert isinstance(cmd.switches, MappingProxyType)
    assert isinstance(cmd.properties, MappingProxyType)
    with pytest.raises(TypeError):
        cmd.properties["SMSSITECODE"] = "XYZ"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.raw = "x"  # type: ignore[misc]
    assert cmd == parse_ccmsetup(SEED)
    assert hash(cmd) == hash(parse_ccmsetup(SEED))


def test_command_built_directly_copies_its_mappings() -> None:
    switches: dict[str, str | None] = {"source": r"\\srv\share"}
    cmd = CcmsetupCommand(raw="", program=None, switches=switches, properties={})
    switches["UsePKICert"] = None
    assert dict(cmd.switches) == {"source": r"\\srv\share"}
    assert cmd.source == (r"\\srv\share",)
    assert cmd.use_pki_cert is False


def test_empty_line_and_program_only() -> None:
    assert parse_ccmsetup("").program is None
    assert parse_ccmsetup("ccmsetup.exe").switches == {}


def test_known_names_sanity() -> None:
    assert "CCMHTTPSSTATE" in KNOWN_PROPERTIES
    assert "SMSMPLIST" in KNOWN_PROPERTIES
    assert "CCMSETUPCMD" not in KNOWN_PROPERTIES  # a ccmsetup.msi property
    assert all(name == name.upper() for name in KNOWN_PROPERTIES)
    assert KNOWN_PARAMETERS["UsePKICert"] is False
    assert KNOWN_PARAMETERS["AlwaysExcludeUpgrade"] is True  # /AlwaysExcludeUpgrade:TRUE


# ------------------------------------------------------------------------------------------
# CommandLineToArgvW splitting
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "tokens"),
    [
        (r'/source:"C:\Client Files"', [r"/source:C:\Client Files"]),
        (r'CCMCERTSEL="SubjectStr:Contoso"', ["CCMCERTSEL=SubjectStr:Contoso"]),
        (r'CCMCERTSEL="SubjectAttr:OU = Computers"', ["CCMCERTSEL=SubjectAttr:OU = Computers"]),
        (r'/source:"\\server\share"', [r"/source:\\server\share"]),
        (r"C:\dir\ x\\y", ["C:\\dir\\", "x\\\\y"]),  # backslashes without a quote: literal
        (r'a\"b', ['a"b']),  # 1 backslash + quote: literal quote
        (r'a\\"b c"', [r"a\b c"]),  # 2 backslashes + quote: 1 backslash, quote toggles
        (r'a\\\"b', [r'a\"b']),  # 3 backslashes + quote: 1 backslash and a literal quote
        (r'a\\\\"b c"', [r"a\\b c"]),  # 4 backslashes + quote: 2 backslashes, quote toggles
        (r'"C:\Client Files\\" next', ["C:\\Client Files\\", "next"]),
        (r'"say """hi""" now"', ['say "hi" now']),  # """ inside quotes: literal, still quoted
        (r'"a"""b c"', ['a"b c']),  # three quotes keep the region open
        ('x "" y', ["x", "", "y"]),
        ("  a\t\tb  ", ["a", "b"]),
        ("", []),
        ('ab"c d"ef', ["abc def"]),
    ],
)
def test_split_windows_command_line(line: str, tokens: list[str]) -> None:
    assert split_windows_command_line(line) == tokens


def test_unclosed_quote_names_the_column() -> None:
    with pytest.raises(CcmsetupSyntaxError, match=r"quote at column 18 .* is never closed"):
        split_windows_command_line(r'ccmsetup /source:"C:\Client Files')
    assert split_windows_command_line(r'ccmsetup /source:"C:\Client Files"') == [
        "ccmsetup",
        r"/source:C:\Client Files",
    ]


def test_unclosed_quote_explains_the_escaped_closing_quote() -> None:
    err = fails(
        r'ccmsetup.exe /source:"C:\Client Files\" /UsePKICert',
        "the quote at column 22",
        "the backslash before the quote at column 39 makes it a literal quote",
    )
    assert "expected a closing" in err.message
    assert parse_ccmsetup(r'ccmsetup.exe /source:"C:\Client Files\\" /UsePKICert').source == (
        "C:\\Client Files\\",
    )


def test_doubled_quote_that_ends_the_region_leaves_a_dangling_quote() -> None:
    # "" inside a quoted region gives a quote *and ends the region*, so the last quote opens
    # a new region that never closes.
    with pytest.raises(CcmsetupSyntaxError, match="quote at column 25 "):
        parse_ccmsetup('CCMCERTSEL="Subject:a""b"')
    with pytest.raises(CcmsetupSyntaxError, match="quote at column 16 "):
        split_windows_command_line('"say ""hi"" now"')
    assert parse_ccmsetup('CCMCERTSEL="Subject:a"""b"').cert_selection == 'Subject:a"b'


# ------------------------------------------------------------------------------------------
# Rule 1: the program
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    [
        "ccmsetup",
        "ccmsetup.exe",
        "CCMSETUP.EXE",
        r"C:\Windows\ccmsetup\ccmsetup.exe",
        r"\\server\SMS_P01\Client\CCMSetup.exe",
        "./ccmsetup.exe",
    ],
)
def test_program_forms(program: str) -> None:
    cmd = parse_ccmsetup(f"{program} /UsePKICert")
    assert cmd.program == program
    assert cmd.use_pki_cert


def test_quoted_program_path() -> None:
    cmd = parse_ccmsetup(r'"C:\Program Files\Client\ccmsetup.exe" /UsePKICert')
    assert cmd.program == r"C:\Program Files\Client\ccmsetup.exe"


def test_line_without_program_starts_with_parameters() -> None:
    cmd = parse_ccmsetup("/UsePKICert SMSSITECODE=P01")
    assert cmd.program is None
    assert cmd.use_pki_cert and cmd.site_code == "P01"


def test_other_program_is_rejected() -> None:
    fails(
        "ccmsetup.msi /UsePKICert",
        "unexpected argument 'ccmsetup.msi': expected the program ccmsetup.exe, a /parameter "
        "or a NAME=value property",
    )
    assert parse_ccmsetup("ccmsetup.exe /UsePKICert").program == "ccmsetup.exe"


# ------------------------------------------------------------------------------------------
# Rule 2: parameters
# ------------------------------------------------------------------------------------------


def test_parameter_names_are_case_insensitive_and_stored_canonically() -> None:
    cmd = parse_ccmsetup(
        "/usepkicert /NOCRLCHECK /Mp:mp1.contoso.com /SOURCE:x /bitspriority:HIGH /? "
        "/alwaysexcludeupgrade:TRUE /upgradetolatest /ignoreskipupgrade /allowmetered"
    )
    assert list(cmd.switches) == [
        "UsePKICert",
        "NoCRLCheck",
        "mp",
        "source",
        "BITSPriority",
        "?",
        "AlwaysExcludeUpgrade",
        "UpgradeToLatest",
        "IgnoreSkipUpgrade",
        "AllowMetered",
    ]
    assert cmd.switches["BITSPriority"] == "HIGH"
    assert cmd.use_pki_cert and cmd.no_crl_check


def test_every_documented_parameter_parses() -> None:
    for name, takes_value in KNOWN_PARAMETERS.items():
        token = f"/{name}:5" if takes_value else f"/{name}"
        assert parse_ccmsetup(token).switches == {name: "5" if takes_value else None}


def test_value_after_first_colon_only() -> None:
    cmd = parse_ccmsetup(r'/config:"C:\My Files\client.txt" /source:C:\a:b')
    assert cmd.switches["config"] == r"C:\My Files\client.txt"
    assert cmd.source == (r"C:\a:b",)


def test_unknown_parameter_lists_close_matches() -> None:
    fails(
        "/UsePKICerts",
        "unknown ccmsetup parameter '/UsePKICerts': expected a documented parameter; "
        "did you mean '/UsePKICert'?",
    )
    assert parse_ccmsetup("/UsePKICert").use_pki_cert


def test_unknown_parameter_without_close_match() -> None:
    err = fails("/frobnicate", "unknown ccmsetup parameter '/frobnicate': expected a documented")
    assert "did you mean" not in err.message


def test_property_written_as_parameter() -> None:
    fails(
        "/SMSSITECODE:P01",
        "'/SMSSITECODE:P01': SMSSITECODE is a client.msi property, not a ccmsetup parameter; "
        "expected 'SMSSITECODE=value'",
    )
    assert parse_ccmsetup("SMSSITECODE=P01").site_code == "P01"


def test_parameter_written_with_equals() -> None:
    fails("/mp=mp1.contoso.com", "'/mp=mp1.contoso.com': parameters take their value after ':'")
    assert parse_ccmsetup("/mp:mp1.contoso.com").mp[0].host == "mp1.contoso.com"


@pytest.mark.parametrize("line", ["/mp", "/mp:", "/retry", "/source: /UsePKICert"])
def test_parameter_needing_a_value_without_one(line: str) -> None:
    token = line.split()[0]
    fails(line, f"parameter '{token}' expects a value: write '/")
    assert parse_ccmsetup("/mp:mp1 /retry:5 /source:x /UsePKICert").switches["retry"] == "5"


def test_space_after_colon_does_not_swallow_a_property() -> None:
    fails("/source: SMSSITECODE=P01", "parameter '/source:' expects a value")
    assert parse_ccmsetup("/source: D:\\Clients SMSSITECODE=P01").source == ("D:\\Clients",)


def test_flag_given_a_value() -> None:
    fails("/UsePKICert:1", "parameter '/UsePKICert:1' takes no value: expected '/UsePKICert' alone")
    fails("/NoCRLCheck:", "parameter '/NoCRLCheck:' takes no value")
    assert parse_ccmsetup("/UsePKICert /NoCRLCheck").no_crl_check


def test_parameter_given_twice() -> None:
    fails(
        "/NoCRLCheck /nocrlcheck",
        "parameter '/nocrlcheck' is given twice; expected '/NoCRLCheck' once",
    )
    fails("/mp:a /MP:b", "parameter '/MP:b' is given twice; expected '/mp' once")
    assert parse_ccmsetup("/NoCRLCheck /mp:a").no_crl_check


def test_source_may_repeat() -> None:
    cmd = parse_ccmsetup(r'/source:"\\srv1\Client" /source:D:\Client /source: E:\Client')
    assert cmd.source == (r"\\srv1\Client", r"D:\Client", r"E:\Client")
    assert cmd.switches["source"] == r"\\srv1\Client"


# ------------------------------------------------------------------------------------------
# Rule 3: properties
# ------------------------------------------------------------------------------------------


def test_lower_case_known_property_is_accepted_with_a_note() -> None:
    cmd = parse_ccmsetup("smsmp=https://mp1.contoso.com")
    assert cmd.smsmp == MpAddress("https", "mp1.contoso.com", "https://mp1.contoso.com")
    assert cmd.notes == ("property name 'smsmp' is documented in upper case as SMSMP",)
    assert parse_ccmsetup("SMSMP=https://mp1.contoso.com").notes == ()


def test_mixed_case_property_is_normalised() -> None:
    assert parse_ccmsetup("SMSSiteCode=ABC").properties == {"SMSSITECODE": "ABC"}
    assert parse_ccmsetup("SMSSITECODE=ABC").site_code == "ABC"


def test_unknown_property_lists_close_matches() -> None:
    fails(
        "SMSSITCODE=ABC",
        "unknown client.msi property 'SMSSITCODE' in 'SMSSITCODE=ABC': expected a documented "
        "property; did you mean 'SMSSITECODE'",
    )
    assert parse_ccmsetup("SMSSITECODE=ABC").site_code == "ABC"


def test_unknown_property_without_close_match() -> None:
    err = fails("FOO=1", "unknown client.msi property 'FOO' in 'FOO=1': expected a documented")
    assert "did you mean" not in err.message


def test_parameter_written_as_property() -> None:
    fails(
        "NOCRLCHECK=1",
        "'NOCRLCHECK=1': NOCRLCHECK is a ccmsetup parameter, not a client.msi property; "
        "expected '/NoCRLCheck'",
    )
    assert parse_ccmsetup("/NoCRLCheck").no_crl_check


def test_ccmsetup_msi_property_is_rejected() -> None:
    fails('CCMSETUPCMD="/mp:x"', "it is a property of ccmsetup.msi, not of ccmsetup.exe")


def test_property_given_twice() -> None:
    fails("FSP=a FSP=b", "property 'FSP=b' is given twice; expected FSP once")
    assert parse_ccmsetup("FSP=a").fsp == "a"


def test_property_without_value() -> None:
    fails("CCMHOSTNAME=", "property 'CCMHOSTNAME=' expects a value: write 'CCMHOSTNAME=<value>'")
    fails('FSP=""', "property 'FSP=' expects a value")
    assert parse_ccmsetup("CCMHOSTNAME=ibcm.contoso.com").ccmhostname == "ibcm.contoso.com"


def test_valueless_property_from_the_doc() -> None:
    cmd = parse_ccmsetup("ccmsetup.exe CCMALLOWSILENTREBOOT SMSSITECODE=P01")
    assert dict(cmd.properties) == {"CCMALLOWSILENTREBOOT": "", "SMSSITECODE": "P01"}
    assert parse_ccmsetup("ccmallowsilentreboot").properties == {"CCMALLOWSILENTREBOOT": ""}


def test_undocumented_ccmhttpsstate_and_quoted_values() -> None:
    cmd = parse_ccmsetup(
        '/NoCRLCheck CCMHTTPSSTATE=31 CCMCERTSEL="SubjectStr:Contoso" '
        'CCMCERTISSUERS="CN=Contoso Root CA; O=Contoso, Ltd | CN=Litware Root" '
        'SMSCACHEFLAGS=NTFSONLY;COMPRESS CCMADMINS="contoso\\admins;contoso\\ops"'
    )
    assert cmd.properties["CCMHTTPSSTATE"] == "31"
    assert cmd.cert_selection == "SubjectStr:Contoso"
    issuers = "CN=Contoso Root CA; O=Contoso, Ltd | CN=Litware Root"
    assert cmd.properties["CCMCERTISSUERS"] == issuers
    assert cmd.properties["SMSCACHEFLAGS"] == "NTFSONLY;COMPRESS"
    assert cmd.properties["CCMADMINS"] == r"contoso\admins;contoso\ops"


def test_every_documented_property_parses() -> None:
    values = {"SMSSITECODE": "ABC", "CCMHTTPPORT": "80", "CCMHTTPSPORT": "443"}
    for name in KNOWN_PROPERTIES:
        value = values.get(name, "1")
        assert parse_ccmsetup(f"{name}={value}").properties == {name: value}


# ------------------------------------------------------------------------------------------
# Rule 4: parameters before properties
# ------------------------------------------------------------------------------------------


def test_parameter_after_property_is_noted() -> None:
    cmd = parse_ccmsetup("ccmsetup.exe SMSSITECODE=P01 /UsePKICert")
    assert cmd.use_pki_cert
    assert cmd.notes == (
        "parameter '/UsePKICert' comes after the client.msi property 'SMSSITECODE=P01'; "
        'the docs say "Specify CCMSetup parameters before you specify properties for '
        'client.msi"',
    )
    assert parse_ccmsetup("ccmsetup.exe /UsePKICert SMSSITECODE=P01").notes == ()


# ------------------------------------------------------------------------------------------
# Rule 5: pure-syntax value checks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["P0", "P001", "P-1", "", "AUTOX"])
def test_bad_site_code(code: str) -> None:
    if not code:
        fails("SMSSITECODE=", "expects a value")
        return
    fails(
        f"SMSSITECODE={code}",
        f"'SMSSITECODE={code}': expected a 3-character site code (letters and digits) or AUTO, "
        f"got '{code}'",
    )


@pytest.mark.parametrize("code", ["P01", "abc", "123", "AUTO", "auto"])
def test_good_site_code(code: str) -> None:
    assert parse_ccmsetup(f"SMSSITECODE={code}").site_code == code


@pytest.mark.parametrize("name", ["CCMALWAYSINF", "CCMFIRSTCERT", "CCMCERTNAMECHECK"])
def test_zero_or_one_properties(name: str) -> None:
    fails(f"{name}=2", f"'{name}=2': expected 0 or 1, got '2'")
    fails(f"{name}=TRUE", f"'{name}=TRUE': expected 0 or 1, got 'TRUE'")
    assert parse_ccmsetup(f"{name}=0").properties[name] == "0"
    assert parse_ccmsetup(f"{name}=1").properties[name] == "1"


def test_always_internet_and_first_cert_follow_the_value() -> None:
    assert parse_ccmsetup("CCMALWAYSINF=0 CCMFIRSTCERT=0").always_internet is False
    cmd = parse_ccmsetup("CCMALWAYSINF=1 CCMFIRSTCERT=1")
    assert cmd.always_internet and cmd.first_cert


@pytest.mark.parametrize("name", ["CCMHTTPPORT", "CCMHTTPSPORT"])
@pytest.mark.parametrize("value", ["0", "65536", "-1", "443a", "https"])
def test_bad_port(name: str, value: str) -> None:
    fails(
        f"{name}={value}",
        f"'{name}={value}': expected a TCP port number from 1 to 65535, got '{value}'",
    )


@pytest.mark.parametrize("name", ["CCMHTTPPORT", "CCMHTTPSPORT"])
@pytest.mark.parametrize("value", ["1", "443", "8443", "65535"])
def test_good_port(name: str, value: str) -> None:
    assert parse_ccmsetup(f"{name}={value}").properties[name] == value


@pytest.mark.parametrize("name", ["retry", "downloadtimeout"])
@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_bad_minutes(name: str, value: str) -> None:
    fails(
        f"/{name}:{value}",
        f"'/{name}:{value}': expected a positive whole number of minutes, got '{value}'",
    )


@pytest.mark.parametrize("name", ["retry", "downloadtimeout"])
def test_good_minutes(name: str) -> None:
    assert parse_ccmsetup(f"/{name}:20").switches[name] == "20"


# ------------------------------------------------------------------------------------------
# Rule 5: management point addresses
# ------------------------------------------------------------------------------------------


def test_smsmp_scheme_is_case_insensitive_and_trailing_slash_is_dropped() -> None:
    cmd = parse_ccmsetup("SMSMP=HTTPS://MP1.contoso.com/")
    assert cmd.smsmp == MpAddress(
        scheme="https", host="MP1.contoso.com", raw="HTTPS://MP1.contoso.com/"
    )
    assert parse_ccmsetup("SMSMP=http://mp1").smsmp == MpAddress("http", "mp1", "http://mp1")
    bare = parse_ccmsetup("SMSMP=mp1.contoso.com").smsmp
    assert bare is not None and bare.scheme is None and not bare.https


def test_smsmp_with_a_path_is_rejected() -> None:
    fails(
        "SMSMP=https://mp1.contoso.com/CCM_Proxy_MutualAuth/1",
        "SMSMP entry 'https://mp1.contoso.com/CCM_Proxy_MutualAuth/1' has a path; expected a "
        "management point host name",
    )
    assert parse_ccmsetup("SMSMP=https://mp1.contoso.com/").smsmp is not None


def test_mp_accepts_a_cmg_url_and_empty_entries() -> None:
    cmd = parse_ccmsetup(
        "/mp:https://CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72057598037248100;mp2.contoso.com;"
    )
    assert cmd.mp == (
        MpAddress(
            "https",
            "CONTOSO.CLOUDAPP.NET",
            "https://CONTOSO.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72057598037248100",
        ),
        MpAddress(None, "mp2.contoso.com", "mp2.contoso.com"),
    )
    fails("/mp:;", "/mp value ';' names no management point")


def test_smsmplist() -> None:
    cmd = parse_ccmsetup(
        "SMSMPLIST=https://smsmp01.contoso.com;smsmp02.contoso.com;http://smsmp03.contoso.com"
    )
    assert cmd.smsmplist == (
        MpAddress("https", "smsmp01.contoso.com", "https://smsmp01.contoso.com"),
        MpAddress(None, "smsmp02.contoso.com", "smsmp02.contoso.com"),
        MpAddress("http", "smsmp03.contoso.com", "http://smsmp03.contoso.com"),
    )


def test_smsmplist_empty_entry_and_path_are_rejected() -> None:
    fails("SMSMPLIST=mp1;;mp2", "SMSMPLIST value 'mp1;;mp2' has an empty entry")
    fails("SMSMPLIST=mp1;https://mp2/x", "SMSMPLIST entry 'https://mp2/x' has a path")
    assert len(parse_ccmsetup("SMSMPLIST=mp1;mp2").smsmplist) == 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://mp1", "SMSMP entry 'ftp://mp1' has the scheme 'ftp://'; expected 'https://'"),
        ("https://", "SMSMP entry 'https://' has no host name"),
        ("https://mp1:443", "SMSMP entry 'https://mp1:443' has the host 'mp1:443'"),
    ],
)
def test_bad_mp_address(value: str, message: str) -> None:
    fails(f"SMSMP={value}", message)


def test_good_mp_address_twin() -> None:
    assert parse_ccmsetup("SMSMP=https://mp1 CCMHTTPSPORT=443").smsmp == MpAddress(
        "https", "mp1", "https://mp1"
    )


# ------------------------------------------------------------------------------------------
# Semantic mistakes are accepted (the simulated client must fail on them, not the parser)
# ------------------------------------------------------------------------------------------


def test_semantic_mistakes_parse() -> None:
    cmd = parse_ccmsetup(
        "ccmsetup.exe /UsePKICert SMSSITECODE=AUTO SMSMP=ibcm-intra.contoso.local "
        "CCMHOSTNAME=https://ibcm-internet.public.com"
    )
    assert cmd.site_code == "AUTO"
    assert cmd.smsmp == MpAddress(None, "ibcm-intra.contoso.local", "ibcm-intra.contoso.local")
    assert cmd.ccmhostname == "https://ibcm-internet.public.com"


# ------------------------------------------------------------------------------------------
# Rule 6: stray words
# ------------------------------------------------------------------------------------------


def test_stray_word_is_rejected() -> None:
    fails(
        "ccmsetup.exe /UsePKICert please SMSSITECODE=P01",
        "unexpected argument 'please': expected a /parameter or a NAME=value property",
    )
    assert parse_ccmsetup("ccmsetup.exe /UsePKICert SMSSITECODE=P01").site_code == "P01"


def test_empty_argument_is_rejected() -> None:
    fails('ccmsetup.exe "" /UsePKICert', "unexpected argument ''")
    fails("-mp:mp1", "unexpected argument '-mp:mp1'")


def test_error_is_a_scenario_error_with_one_line() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_ccmsetup("ccmsetup.exe\t/bogus\nSMSSITECODE=P01")
    assert isinstance(info.value, CcmsetupSyntaxError)
    assert "\n" not in str(info.value)
    assert "\\x0a" in info.value.message
