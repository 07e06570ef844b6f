"""What every command of the CLI shares: the certificate folder, output files, lists."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from lab.errors import UsageError
from lab.files import make_folders, write_atomic

CERTS_HELP = "certificate and key cache folder (default: ./certs, or $IBCM_LAB_CERTS)"


def certs_folder(value: str | None) -> str:
    """``--certs``, else ``$IBCM_LAB_CERTS``, else ``certs``."""
    return value or os.environ.get("IBCM_LAB_CERTS") or "certs"


def check_writable(folder: Path) -> None:
    """Fail before a run, not after it, when --out cannot be written."""
    try:
        make_folders(folder)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ibcm-lab-probe-"):
            pass
    except OSError as e:
        raise UsageError(f"--out {folder}: cannot write there ({e.strerror or e})") from None


def emit(text: str, out: str | None) -> None:
    """Write ``text`` to the file ``out`` (atomically) or to standard output."""
    if out is None:
        sys.stdout.write(text)
        return
    target = Path(out)
    try:
        # Atomic, mode 0644 whatever the umask; a symbolic link at --out is refused.
        write_atomic(target, text.encode("utf-8"))
    except OSError as e:
        raise UsageError(f"--out {target}: cannot write it ({e.strerror or e})") from None


def split_list(value: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]
