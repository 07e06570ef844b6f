"""Stage 2: a parseable line against the site, one function per rule.

Each rule looks at the line (as editable arguments and as the parsed command) and the site, and
returns at most one :class:`~lab.configmgr.lint.fixes.Pending` finding: its texts and the fix
that removes it. The findings come out in the order of :data:`RULES`. The rules about the
management points are in :mod:`lab.configmgr.lint.rules_mp`.
"""

from __future__ import annotations

from typing import Final

from lab.configmgr.ccmsetup import CcmsetupCommand, parse_ccmsetup
from lab.configmgr.lint.fixes import (
    Arg,
    Fix,
    Pending,
    Rule,
    add_flag,
    args_of,
    set_or_remove,
    setter,
)
from lab.configmgr.lint.report import SiteContext
from lab.configmgr.lint.rules_mp import (
    ccmhostname_host,
    ccmhostname_path,
    ccmhostname_port,
    ccmhostname_scheme,
    missing_ccmhostname,
    mp_cmg_without_https,
    mp_https_not_cmg,
    smsmp_host_mismatch,
    smsmp_without_https,
    smsmplist_without_https,
)
from lab.configmgr.lint.shared import SINGLE_QUOTES
from lab.configmgr.lint.sources import (
    SRC_CASE,
    SRC_NOCRLCHECK,
    SRC_ORDER,
    SRC_QUOTING,
    SRC_SITECODE,
    SRC_USEPKICERT,
)

__all__ = ["RULES", "analyse"]


# --------------------------------------------------------------------------------------------
# Quoting
# --------------------------------------------------------------------------------------------


def _shown(arg: Arg) -> str:
    if arg.kind == "param":
        return f"/{arg.written}:{arg.value}"
    return f"{arg.written}={arg.value}"


def _single_quoted(value: str | None) -> bool:
    return value is not None and len(value) >= 2 and value[0] in SINGLE_QUOTES \
        and value[-1] in SINGLE_QUOTES


def single_quoted_value(args: list[Arg], cmd: CcmsetupCommand,
                        site: SiteContext) -> Pending | None:
    """Values that kept single quotes."""
    single = [a for a in args if a.kind != "program" and _single_quoted(a.value)]
    if not single:
        return None

    def unquote(args: list[Arg], names: tuple[str, ...] = tuple(a.name for a in single)
                ) -> None:
        for a in list(args):
            if a.name in names and a.value is not None and _single_quoted(a.value):
                set_or_remove(args, a, a.value[1:-1])

    shown = ", ".join(_shown(a) for a in single)
    return Pending(
        "error", "single-quoted-value",
        f"{shown}: Windows does not quote with single quotes, so ccmsetup receives them "
        "as part of the value",
        "quote with double quotes, or not at all when the value has no space",
        SRC_QUOTING, unquote)


def literal_quote_in_value(args: list[Arg], cmd: CcmsetupCommand,
                           site: SiteContext) -> Pending | None:
    """Values that kept a literal double quote."""
    literal = [a for a in args if a.kind != "program" and a.value is not None
               and '"' in a.value]
    if not literal:
        return None

    def strip_quotes(args: list[Arg], names: tuple[str, ...] = tuple(
            a.name for a in literal)) -> None:
        for a in list(args):
            if a.name in names and a.value is not None and '"' in a.value:
                set_or_remove(args, a, a.value.replace('"', ""))

    shown = ", ".join(_shown(a) for a in literal)
    return Pending(
        "warning", "literal-quote-in-value",
        f"{shown}: after Windows unquoting the value still contains a double quote "
        '(written \\" or """), which ccmsetup takes literally',
        "remove the escaped quotes", SRC_QUOTING, strip_quotes)


# --------------------------------------------------------------------------------------------
# /UsePKICert
# --------------------------------------------------------------------------------------------


def missing_usepkicert(args: list[Arg], cmd: CcmsetupCommand,
                       site: SiteContext) -> Pending | None:
    if cmd.use_pki_cert:
        return None
    why: list[str] = []
    if site.https_only:
        why.append("the site's MPs accept HTTPS only")
    if cmd.ccmhostname is not None:
        why.append("CCMHOSTNAME names an internet MP, which is always HTTPS")
    if cmd.always_internet:
        why.append("CCMALWAYSINF=1 must be used with /UsePKICert")
    if any(mp.https for mp in (cmd.smsmp, *cmd.smsmplist) if mp is not None):
        why.append("SMSMP names an HTTPS MP")
    if not why:
        return None
    return Pending(
        "error", "missing-usepkicert",
        "/UsePKICert is missing although " + " and ".join(why) + ": without it the client "
        "filters out every HTTPS MP and finds none (0x87D00269, required management point "
        "not found)",
        "add /UsePKICert", SRC_USEPKICERT, lambda a: add_flag(a, "UsePKICert"))


# --------------------------------------------------------------------------------------------
# SMSSITECODE
# --------------------------------------------------------------------------------------------


def _site_code_fix(site: SiteContext) -> tuple[str, Fix | None]:
    code = site.site_code
    apply: Fix | None = setter("SMSSITECODE", code) if code else None
    fix = f"write SMSSITECODE={code}" if code else \
        "write SMSSITECODE=<site code> (pass --site-code for the corrected line)"
    return fix, apply


def _internet_client(cmd: CcmsetupCommand) -> str | None:
    """What makes the client an internet one (``CCMHOSTNAME``, ``CCMALWAYSINF=1``), if any."""
    if cmd.ccmhostname is None and not cmd.always_internet:
        return None
    return "CCMHOSTNAME" if cmd.ccmhostname is not None else "CCMALWAYSINF=1"


def missing_smssitecode(args: list[Arg], cmd: CcmsetupCommand,
                        site: SiteContext) -> Pending | None:
    if cmd.site_code is not None:
        return None
    fix, apply = _site_code_fix(site)
    which = _internet_client(cmd)
    if which is not None:
        return Pending(
            "error", "missing-smssitecode",
            f"SMSSITECODE is missing (which means AUTO) while {which} is given: internet "
            "clients must be directly assigned; automatic site assignment is not "
            "supported on the internet", fix, SRC_SITECODE, apply)
    if site.site_code or site.internet_fqdn:
        return Pending(
            "info", "missing-smssitecode",
            "SMSSITECODE is missing, which means AUTO: assignment then needs AD DS or "
            "boundary groups on the intranet, and a client that later goes to the internet "
            "must have been directly assigned; the seed's line names the site",
            fix, SRC_SITECODE, apply)
    return None


def smssitecode_auto(args: list[Arg], cmd: CcmsetupCommand,
                     site: SiteContext) -> Pending | None:
    if cmd.site_code is None or cmd.site_code.upper() != "AUTO":
        return None
    fix, apply = _site_code_fix(site)
    which = _internet_client(cmd)
    if which is not None:
        return Pending(
            "error", "smssitecode-auto-with-ccmhostname",
            f"SMSSITECODE=AUTO together with {which}: \"Do not use AUTO together with "
            "CCMHOSTNAME\"; internet clients must be directly assigned",
            fix, SRC_SITECODE, apply)
    if site.site_code or site.internet_fqdn:
        return Pending(
            "info", "smssitecode-auto",
            "SMSSITECODE=AUTO works only on the intranet (AD DS or boundary groups); a "
            "client meant to roam to the internet should be directly assigned",
            fix, SRC_SITECODE, apply)
    return None


def smssitecode_mismatch(args: list[Arg], cmd: CcmsetupCommand,
                         site: SiteContext) -> Pending | None:
    value, code = cmd.site_code, site.site_code
    if value is None or value.upper() == "AUTO" or not code or value.upper() == code.upper():
        return None
    fix, apply = _site_code_fix(site)
    return Pending(
        "error", "smssitecode-mismatch",
        f"SMSSITECODE={value} but the site is {code}: the client would try to assign "
        "itself to another site and never take this site's policy",
        fix, SRC_SITECODE, apply)


# --------------------------------------------------------------------------------------------
# /NoCRLCheck
# --------------------------------------------------------------------------------------------


def missing_nocrlcheck(args: list[Arg], cmd: CcmsetupCommand,
                       site: SiteContext) -> Pending | None:
    if cmd.no_crl_check or not (cmd.use_pki_cert or site.https_only):
        return None
    return Pending(
        "info", "missing-nocrlcheck",
        "/NoCRLCheck is not given: if the CRL is not published where internet (or workgroup) "
        "clients reach it, publish it over HTTP where they do; failing that, add /NoCRLCheck "
        "for the bootstrap and clear the site's \"Clients check the certificate revocation "
        "list (CRL) for site systems\" box (a trade-off: it lowers security for every client)",
        "add /NoCRLCheck (and clear the site box), unless the CRL is reachable over HTTP "
        "from everywhere", SRC_NOCRLCHECK, lambda a: add_flag(a, "NoCRLCheck"))


# --------------------------------------------------------------------------------------------
# What the parser accepts but the documentation advises against
# --------------------------------------------------------------------------------------------


def _move_parameters_first(a: list[Arg]) -> None:
    first = next((i for i, x in enumerate(a) if x.kind == "prop"), None)
    if first is None:
        return
    late = [x for x in a[first:] if x.kind == "param"]
    for x in late:
        a.remove(x)
    for offset, x in enumerate(late):
        a.insert(first + offset, x)


def parameter_after_property(args: list[Arg], cmd: CcmsetupCommand,
                             site: SiteContext) -> Pending | None:
    order_notes = [n for n in cmd.notes if n.startswith("parameter ")]
    if not order_notes:
        return None
    return Pending(
        "warning", "parameter-after-property", "; ".join(order_notes),
        "move the parameters before the first property", SRC_ORDER, _move_parameters_first)


def _upper_case_properties(a: list[Arg]) -> None:
    for x in a:
        if x.kind == "prop" and x.written != x.name:
            x.written = x.name
            x.tokens = None


def property_name_case(args: list[Arg], cmd: CcmsetupCommand,
                       site: SiteContext) -> Pending | None:
    case_notes = [n for n in cmd.notes if n.startswith("property name ")]
    if not case_notes:
        return None
    return Pending(
        "warning", "property-name-case", "; ".join(case_notes),
        "write the property names in upper case", SRC_CASE, _upper_case_properties)


RULES: Final[tuple[Rule, ...]] = (
    single_quoted_value,
    literal_quote_in_value,
    missing_usepkicert,
    smsmp_without_https,
    smsmplist_without_https,
    smsmp_host_mismatch,
    missing_smssitecode,
    smssitecode_auto,
    smssitecode_mismatch,
    missing_ccmhostname,
    ccmhostname_scheme,
    ccmhostname_path,
    ccmhostname_port,
    ccmhostname_host,
    mp_cmg_without_https,
    mp_https_not_cmg,
    missing_nocrlcheck,
    parameter_after_property,
    property_name_case,
)
"""Every rule, in the order their findings are reported."""


def analyse(line: str, site: SiteContext) -> tuple[list[Arg], list[Pending]]:
    """The arguments of the parseable ``line`` and what every rule finds in it."""
    cmd = parse_ccmsetup(line)
    args = args_of(line, cmd)
    pending = [p for rule in RULES if (p := rule(args, cmd, site)) is not None]
    return args, pending
