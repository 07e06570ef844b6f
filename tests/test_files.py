"""Files the lab writes on a shared machine, and names that reach files (issue 20).

* every folder the lab creates is owner-writable only whatever the umask (``umask 000``
  made ``certs/certs`` and ``certs/public`` mode 777 on main);
* a certificate cache folder others can write to is refused with the ``chmod`` that fixes it;
* a symbolic link planted where the lab writes a key, a report or a log is refused, never
  followed (on main a planted key link handed the lab someone else's key);
* two runs writing one ``--out`` folder take turns (a lock; docs/limits.md);
* a scenario whose file name holds a newline, ``]LOG]!>``, ``#Fields:`` or is ``..`` writes
  only inside the output folder and forges no log line.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from labtest import SCENARIOS

from lab.cli import main
from lab.errors import UsageError
from lab.files import FolderLock, make_folders, safe_component, write_atomic
from lab.pki.cache import PKICache

SCENARIO = SCENARIOS / "seed3-smsmp-with-https.toml"


def cli(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ibcm-lab: error: "), err
    return lines[0]


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        found[str(p.relative_to(root))] = stat.S_IMODE(p.lstat().st_mode)
    return found


# ------------------------------------------------------------------------------------------
# Owner-only folders
# ------------------------------------------------------------------------------------------

def test_the_cache_folders_are_owner_only_under_umask_000(tmp_path: Path) -> None:
    with umask(0):
        cache = PKICache(tmp_path / "certs")
        cache.key("probe")
    found = modes(tmp_path / "certs")
    assert found["."] == 0o755 and found["certs"] == 0o755 and found["public"] == 0o755, found
    assert found["keys"] == 0o700, found
    assert all(m & 0o077 == 0 for name, m in found.items() if name.endswith(".key.pem")), found


def test_a_run_under_umask_000_writes_nothing_others_can_change(tmp_path: Path,
                                                                certs_dir: Path) -> None:
    out = tmp_path / "deep" / "out"
    with umask(0):
        code, _, err = cli("run", SCENARIO, "--certs", certs_dir, "--out", out)
        report = tmp_path / "reports" / "run.xml"
        make_folders(report.parent)
        code2, _, err2 = cli("run", SCENARIO, "--certs", certs_dir, "--format", "junit",
                             "--out", report)
    assert code == 0 and code2 == 0, err + err2
    for root in (tmp_path / "deep", tmp_path / "reports"):
        found = modes(root)
        assert found and all(m & 0o022 == 0 for m in found.values()), found
    assert stat.S_IMODE(report.stat().st_mode) == 0o644


@pytest.mark.parametrize("folder", [".", "certs", "public", "keys"])
def test_a_cache_folder_others_can_write_is_refused(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "certs"
    PKICache(root)
    target = root if folder == "." else root / folder
    target.chmod(0o777 if folder != "keys" else 0o720)
    code, out, err = cli("run", SCENARIO, "--certs", root)
    assert (code, out) == (2, "")
    line = one_line(err)
    assert str(target) in line and "other users" in line and f"chmod go-w '{target}'" in line
    target.chmod(0o755 if folder != "keys" else 0o700)  # the twin: fixed, it is used
    PKICache(root)


# ------------------------------------------------------------------------------------------
# Planted symbolic links
# ------------------------------------------------------------------------------------------

def test_a_link_planted_at_a_key_is_refused_not_followed(tmp_path: Path) -> None:
    cache = PKICache(tmp_path / "certs")
    theirs = tmp_path / "theirs.key.pem"
    planted = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    theirs.write_bytes(planted.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    cache.key_path("mp").symlink_to(theirs)
    with pytest.raises(UsageError, match="symbolic link"):
        cache.key("mp")
    cache.key_path("mp").unlink()  # the twin: without the link, a key of the lab's own
    assert cache.key("mp").private_numbers() != planted.private_numbers()


def test_a_link_planted_at_the_report_is_refused(tmp_path: Path, certs_dir: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    report = tmp_path / "report.xml"
    report.symlink_to(victim)
    code, _, err = cli("run", SCENARIO, "--certs", certs_dir, "--format", "junit",
                       "--out", report)
    assert code == 2 and "symbolic link" in one_line(err) and str(report) in err
    assert report.is_symlink() and victim.read_text() == "precious\n"


def test_a_link_planted_at_a_log_is_refused(tmp_path: Path, certs_dir: Path) -> None:
    out = tmp_path / "out"
    code, _, err = cli("run", SCENARIO, "--certs", certs_dir, "--out", out)
    assert code == 0, err
    log = sorted(out.rglob("*.log"))[0]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log.unlink()
    log.symlink_to(victim)
    code, _, err = cli("run", SCENARIO, "--certs", certs_dir, "--out", out)
    assert code == 2 and "symbolic link" in one_line(err)
    assert log.is_symlink() and victim.read_text() == "precious\n"


def test_write_atomic_refuses_a_dangling_link(tmp_path: Path) -> None:
    target = tmp_path / "x.pem"
    target.symlink_to(tmp_path / "elsewhere" / "x.pem")
    with pytest.raises(UsageError, match="never followed"):
        write_atomic(target, b"data")
    assert not (tmp_path / "elsewhere").exists()


# ------------------------------------------------------------------------------------------
# Two runs, one folder
# ------------------------------------------------------------------------------------------

def test_a_second_run_on_a_locked_folder_waits_then_stops(tmp_path: Path) -> None:
    out = make_folders(tmp_path / "out")
    with FolderLock(out):
        # Another process's lock, as the kernel sees it (a second open file description).
        import fcntl

        fd = os.open(out, os.O_RDONLY)
        try:
            FolderLock._held.clear()  # as if this were another process
            with pytest.raises(UsageError, match="another ibcm-lab run is writing"), \
                    FolderLock(out, wait=0):
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def test_the_lock_is_released_after_a_run(tmp_path: Path, certs_dir: Path) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        code, _, err = cli("run", SCENARIO, "--certs", certs_dir, "--out", out)
        assert code == 0, err
    with FolderLock(out, wait=0):
        pass


# ------------------------------------------------------------------------------------------
# Names that reach files
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", "x\n]LOG]!><time=\"0\"", "#Fields: date cs-uri",
                                  "a\\b", " ", "..."])
def test_safe_component_stays_in_its_folder(name: str) -> None:
    safe = safe_component(name)
    assert safe not in (".", "..", "") and "/" not in safe and "\\" not in safe
    assert "\n" not in safe and "]LOG]" not in safe and not safe.startswith("#")


@pytest.mark.parametrize("stem", ["..", "x\n]LOG]!><time=\"0\" date=\"1\"", "#Fields: date"])
def test_a_hostile_scenario_file_name_stays_in_the_output_folder(tmp_path: Path,
                                                                 certs_dir: Path,
                                                                 stem: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path = src / f"{stem}.toml"
    shutil.copy(SCENARIO, path)
    out = tmp_path / "box" / "out"
    code, _, err = cli("run", path, "--certs", certs_dir, "--out", out)
    assert code == 0, err
    outside = [p for p in (tmp_path / "box").iterdir() if p.name != "out"]
    assert outside == []  # nothing beside the output folder (main wrote box/PC01 for '..')
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written
    for p in written:
        assert "\n" not in str(p.relative_to(out))
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            assert not line.startswith("]LOG]!>")  # no forged CMTrace line
            if line.startswith("#Fields:"):
                assert p.suffix == ".log" and "date" in line and "cs-uri" in line
