"""How the lab writes files on a machine it may share with other users (docs/limits.md).

* :func:`make_folders`: every folder the lab creates is owner-writable only (``0755``, or
  ``0700`` for keys), whatever the umask;
* :func:`refuse_shared`: a folder whose contents later runs trust (the certificate cache) is
  refused when other users can write to it;
* :func:`write_atomic`: a file is written to a temporary file in the same folder, then renamed
  over the target, so a reader never sees half of it; a symbolic link planted at the target
  is refused, never followed;
* :class:`FolderLock`: one run at a time writes a folder of results (two runs on one
  ``--out`` folder take turns instead of interleaving their files).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from lab.errors import UsageError


def safe_component(name: str, fallback: str = "scenario") -> str:
    """``name`` as one file-name component that stays in its folder on every system: only
    letters, digits, ``.``, ``_`` and ``-`` (others become ``_``), no leading or trailing dot
    (so never ``.`` or ``..``), at most 100 characters; ``fallback`` when nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:100].strip(".")
    return cleaned if cleaned.strip("_") else fallback


def make_folders(path: str | Path, mode: int = 0o755) -> Path:
    """Create ``path`` and its missing parents with ``mode`` (set explicitly, so the umask
    cannot widen it); folders that exist are left as they are. OSError as ``mkdir``."""
    path = Path(path)
    missing: list[Path] = []
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode)
            os.chmod(p, mode)
    return path


def refuse_shared(path: str | Path, what: str) -> None:
    """UsageError when other users can write to the folder ``path`` (group- or world-
    writable) or when it belongs to another user: they could replace what later runs
    trust."""
    path = Path(path)
    st = path.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"{what} {path} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):04o}): refused, another user could replace a CA "
            f"certificate or key the lab trusts. Fix it with: chmod go-w '{path}' (or choose "
            "another folder with --certs)")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UsageError(f"{what} {path} belongs to another user (uid {st.st_uid}): refused; "
                         "choose a folder of your own with --certs")


def refuse_link(path: str | Path) -> None:
    """UsageError when a symbolic link sits where the lab is about to write a file."""
    if Path(path).is_symlink():
        raise UsageError(f"{path}: a symbolic link is where the lab would write this file: "
                         "refused, never followed (remove the link if it is yours)")


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, with ``mode``
    (umask-proof). UsageError for a symbolic link at ``path``; OSError as ``open``."""
    path = Path(path)
    refuse_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


class FolderLock:
    """An exclusive lock on ``folder`` (``flock`` on the folder itself: no file is left in
    it) for as long as the ``with`` block runs: another run waits up to ``wait`` seconds for
    it, then stops with a UsageError naming the folder. Where ``fcntl`` is missing it locks
    nothing. Re-entrant within one process (``run`` holds it around the logs and the traces
    it writes)."""

    _held: ClassVar[dict[str, int]] = {}

    def __init__(self, folder: str | Path, wait: float = 60.0) -> None:
        self.folder = Path(folder)
        self.wait = wait
        self._fd: int | None = None
        self._key = os.path.realpath(self.folder)

    def __enter__(self) -> FolderLock:
        if self._key in FolderLock._held:
            FolderLock._held[self._key] += 1
            return self
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise UsageError(
                        f"{self.folder}: another ibcm-lab run is writing to this folder (it "
                        "holds a lock on it); wait for it to finish or choose another folder"
                    ) from None
                time.sleep(0.05)
        self._fd = fd
        FolderLock._held[self._key] = 1
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        count = FolderLock._held.get(self._key, 0)
        if count > 1:
            FolderLock._held[self._key] = count - 1
            return
        FolderLock._held.pop(self._key, None)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


__all__ = ["FolderLock", "make_folders", "refuse_link", "refuse_shared",
           "safe_component", "write_atomic"]
