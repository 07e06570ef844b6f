"""The on-disk PKI cache under ``certs/``: keys (0600), certificates, chains and CRLs.

Layout::

    certs/keys/<label>.key.pem      private keys, mode 0600, reused by every later build
    certs/certs/<digest>.pem        certificates, named by a digest of everything that shaped
                                    them (profile, issuer certificate, public key)
    certs/public/<digest>.pem       chains and CRLs handed to TLS contexts (public material)

Writes are atomic (a temporary file in the same folder, then ``os.replace``), so two lab
runs sharing one cache never see half-written files; a file that does not parse is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lab.errors import PKIBuildError
from lab.files import make_folders, refuse_link, refuse_shared

PrivateKey = rsa.RSAPrivateKey

KEY_SIZE = 2048


class KeyGenerationStopped(Exception):
    """A build was asked to stop (Ctrl-C) before it generated the key for this label."""


def _safe(label: str) -> str:
    """A readable file name for ``label`` that no other label maps to (a digest suffix)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:80] or "key"
    return f"{readable}-{hashlib.sha256(label.encode()).hexdigest()[:12]}"


class PKICache:
    """Keys and certificates kept between runs (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._keys: dict[str, PrivateKey] = {}
        self._stop: threading.Event | None = None
        try:
            # Owner-only folders whatever the umask; one that others can write to is refused:
            # another user could replace a cached CA certificate that later runs trust.
            make_folders(self.root)
            for sub in ("keys", "certs", "public"):
                make_folders(self.root / sub, 0o700 if sub == "keys" else 0o755)
            for folder in (self.root, *(self.root / sub for sub in ("keys", "certs", "public"))):
                refuse_shared(folder, "the certificate cache folder")
            os.chmod(self.root / "keys", 0o700)  # readable by others (0755): tightened
        except OSError as e:
            raise PKIBuildError(
                f"cannot use the certificate cache folder {self.root}: {e.strerror}"
            ) from None
        self.keys_generated = 0
        self.certs_issued = 0
        self._sweep_stale_temporaries()

    def _sweep_stale_temporaries(self, older_than: float = 3600.0) -> None:
        """Remove ``.tmp-*`` files a killed run left behind (an hour old or more)."""
        import time

        limit = time.time() - older_than
        for sub in ("keys", "certs", "public"):
            for stale in (self.root / sub).glob(".tmp-*"):
                try:
                    if stale.stat().st_mtime < limit:
                        stale.unlink()
                except OSError:
                    pass

    # -- writing ------------------------------------------------------------------------
    def _atomic_write(self, path: Path, data: bytes, mode: int = 0o644) -> None:
        refuse_link(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise PKIBuildError(f"cannot write {path}: {e.strerror}") from None

    # -- keys ---------------------------------------------------------------------------
    def key_path(self, label: str) -> Path:
        return self.root / "keys" / f"{_safe(label)}.key.pem"

    def _load_key(self, path: Path) -> PrivateKey | None:
        """The key in ``path``, or None when it is missing or damaged."""
        try:
            # The lab wrote these keys itself: skip OpenSSL's slow RSA consistency check
            # (~35 ms a key).
            loaded = serialization.load_pem_private_key(
                path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError, OSError):
            return None
        if not (isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == KEY_SIZE):
            return None
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return loaded

    @contextlib.contextmanager
    def stop_when(self, event: threading.Event) -> Iterator[None]:
        """While in the block, :meth:`key` raises :class:`KeyGenerationStopped` instead of
        generating a new key once ``event`` is set (keys already on disk still load)."""
        previous, self._stop = self._stop, event
        try:
            yield
        finally:
            self._stop = previous

    def key(self, label: str) -> PrivateKey:
        """The private key for ``label``: from memory, from disk, or newly generated.

        Two runs sharing the cache agree on one key: a new key is published with a hard link
        (which fails if the file appeared meanwhile, and then the other run's key is used);
        only a damaged file is replaced.
        """
        if label in self._keys:
            return self._keys[label]
        path = self.key_path(label)
        refuse_link(path)  # a planted link would hand the lab someone else's key
        key = self._load_key(path)
        if key is None:
            if self._stop is not None and self._stop.is_set():
                raise KeyGenerationStopped(label)
            damaged = path.exists()
            fresh = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
            pem = fresh.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
            if damaged:
                self._atomic_write(path, pem, mode=0o600)
                key = fresh
            else:
                key = self._publish_new_key(path, pem, fresh)
            if key is fresh:
                self.keys_generated += 1
        self._keys[label] = key
        return key

    def _publish_new_key(self, path: Path, pem: bytes, fresh: PrivateKey) -> PrivateKey:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pem")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(pem)
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    # Another run published its key first: use that one (never a link).
                    refuse_link(path)
                    other = self._load_key(path)
                    if other is not None:
                        return other
                    os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as e:
            raise PKIBuildError(f"cannot write {path}: {e.strerror}") from None
        return fresh

    # -- certificates ---------------------------------------------------------------------
    def cert_path(self, digest: str) -> Path:
        return self.root / "certs" / f"{digest}.pem"

    def load_cert(self, digest: str) -> x509.Certificate | None:
        path = self.cert_path(digest)
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            return None

    def store_cert(self, digest: str, cert: x509.Certificate) -> Path:
        path = self.cert_path(digest)
        self._atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))
        self.certs_issued += 1
        return path

    # -- public files (chains, CRLs) ------------------------------------------------------------
    def public_file(self, data: bytes, suffix: str = ".pem") -> Path:
        """A file holding ``data``, named by its digest (written once, then reused)."""
        digest = hashlib.sha256(data).hexdigest()[:32]
        path = self.root / "public" / f"{digest}{suffix}"
        try:
            current: bytes | None = path.read_bytes()
        except OSError:
            current = None
        if current != data:  # missing, or damaged by an interrupted run
            self._atomic_write(path, data)
        return path
