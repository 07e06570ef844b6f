"""Lint a ``ccmsetup.exe`` command line against the IBCM site it will be used with.

``ibcm-lab ccmsetup "COMMAND LINE" [--site-code XYZ] [--intranet-fqdn FQDN]
[--internet-fqdn FQDN] [--https-or-http]`` reports every mistake of the seed document's
section 3 (and the neighbouring ones support engineers meet), each with a one-line reason,
its source, the fix and the corrected command line, then one line with every fix applied.

Two stages:

1. **Syntax.** :func:`lab.configmgr.ccmsetup.parse_ccmsetup` rejects malformed lines (unbalanced
   quotes, unknown names, bad values). Each rejection becomes an *error* finding with the parser's
   message; the linter repairs the line (closes the quote, corrects the spelling, drops what
   cannot be saved) and parses again, until the line parses. The corrected line of a syntax
   finding is that first parseable line (every syntax repair applied), so it always parses.
2. **Semantics.** The parseable line is checked against the site: ``/UsePKICert``,
   ``SMSMP``'s scheme and host, ``SMSSITECODE``, ``CCMHOSTNAME``, ``CCMALWAYSINF``,
   ``/NoCRLCheck``, ``/mp``, parameter order and property spelling. The corrected line of a
   semantic finding applies that one fix to the parseable line.

The final *corrected* line applies every fix (info ones too: they turn the line into the
seed's recommended form), re-linting until nothing fixable is left. A fix that needs a value
the linter was not given (the site code, the internet FQDN) has no corrected line; its fix text
names the option to pass.

Corrected lines are re-quoted with :func:`lab.configmgr.winargs.join_windows_command_line`,
the inverse of :func:`lab.configmgr.winargs.split_windows_command_line`; quoting may therefore
look different from the original while meaning the same arguments.

The modules: ``linter`` (:func:`lint_ccmsetup`, the two stages put together), ``report`` (the
data it returns), ``syntax`` (stage 1), ``rules`` and ``rules_mp`` (stage 2, one function per rule),
``fixes`` (the corrected line), ``render`` (text and JSON), ``sources`` (what each rule cites),
``shared`` (helpers of both stages).

Sources: ``docs/reference.md`` (cited as "reference §") and the seed
document (``docs/seed.md``, cited as "seed §").
"""

from lab.configmgr.lint.linter import lint_ccmsetup
from lab.configmgr.lint.render import render_json, render_text
from lab.configmgr.lint.report import Finding, LintReport, Severity, SiteContext

__all__ = [
    "Finding",
    "LintReport",
    "Severity",
    "SiteContext",
    "lint_ccmsetup",
    "render_json",
    "render_text",
]
