"""Helpers both stages of the linter share: names, patterns, host comparison."""

from __future__ import annotations

import re
from typing import Final

from lab.configmgr.ccmsetup import KNOWN_PARAMETERS, CcmsetupCommand, parse_ccmsetup
from lab.configmgr.ccmsetup import URLISH_RE as URLISH_RE  # its home is the parser
from lab.errors import CcmsetupSyntaxError

PARAM_BY_LOWER: Final = {name.lower(): name for name in KNOWN_PARAMETERS}
CMG_PATH_RE: Final = re.compile(r"/CCM_Proxy_(?:MutualAuth|ServerAuth)/", re.IGNORECASE)
SINGLE_QUOTES: Final = "'\u2018\u2019"


def same_host(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def parses(line: str) -> CcmsetupCommand | None:
    try:
        return parse_ccmsetup(line)
    except CcmsetupSyntaxError:
        return None
