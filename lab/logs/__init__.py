"""Machine logs as files: CMTrace client and MP logs, the MP's IIS W3C log, and the writer
behind ``ibcm-lab run --out DIR``.

* :mod:`lab.logs.cmtrace`: ``format_line``, ``format_log``, ``CMTRACE_LINE``, ``parse_line``
* :mod:`lab.logs.w3c`: ``format_w3c``, ``parse_w3c``
* :mod:`lab.logs.writer`: ``write_logs`` (not imported here: it needs the run results)
"""

from __future__ import annotations

from lab.logs.cmtrace import CMTRACE_LINE, format_line, format_log, parse_line, parse_log
from lab.logs.w3c import format_w3c, parse_w3c

__all__ = ["CMTRACE_LINE", "format_line", "format_log", "format_w3c", "parse_line",
           "parse_log", "parse_w3c"]
