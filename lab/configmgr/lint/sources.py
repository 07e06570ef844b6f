"""Where each rule of the linter comes from; every finding cites one of these.

Sources: ``docs/reference.md`` (cited as "reference §") and the seed
document (``docs/seed.md``, cited as "seed §").
"""

from __future__ import annotations

from typing import Final

SRC_SYNTAX: Final = "reference §1.1 [V] (ccmsetup syntax: /parameter:value, then PROPERTY=value)"
SRC_QUOTING: Final = (
    "CommandLineToArgvW quoting rules (lab/configmgr/ccmsetup.py split_windows_command_line); "
    "reference §1.1 [V] (values with spaces must be quoted)"
)
SRC_USEPKICERT: Final = (
    "seed §3; reference §1.2 /UsePKICert [V] (without it the client filters out HTTPS MPs), "
    "§6.3 (0x87D00269)"
)
SRC_SMSMP: Final = "seed §3; reference §1.3 SMSMP [V] and §1.4c [I] (the 403.4 that follows)"
SRC_SMSMPLIST: Final = "reference §1.3 SMSMPLIST [V] (same https:// rule per entry)"
SRC_SITECODE: Final = "seed §3; reference §1.3 SMSSITECODE and §1.4 option A [V]"
SRC_CCMHOSTNAME: Final = "seed §3; reference §1.3 CCMHOSTNAME [V]"
SRC_MISSING_HOSTNAME: Final = "seed §3 supplement 2; reference §1.4 options A and B [V]"
SRC_ALWAYSINF: Final = "reference §1.3 CCMALWAYSINF [V] (use with CCMHOSTNAME, /UsePKICert, " \
    "SMSSITECODE)"
SRC_NOCRLCHECK: Final = (
    "seed §4; reference §1.4b and §2.3 [V] (/NoCRLCheck covers the bootstrap only)"
)
SRC_MP: Final = "reference §1.2 /mp and §1.4c [V] (only a CMG URL needs https://)"
SRC_ORDER: Final = "reference §1.1 [V] (\"Specify CCMSetup parameters before you specify " \
    "properties for client.msi\")"
SRC_CASE: Final = "reference §1.1 [V] (properties are UPPER CASE)"
