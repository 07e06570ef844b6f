"""OpenSSL's verification time, set on a real ``ssl.SSLContext``: the client's own clock.

Python's ``ssl`` module verifies a peer at the system time and offers no way to change it.
OpenSSL itself does: ``X509_VERIFY_PARAM_set_time`` on the context's verification parameters
makes every later handshake judge certificate and CRL dates at that instant (and sets
``X509_V_FLAG_USE_CHECK_TIME``). This module calls it, through ``ctypes``, on the very
``SSL_CTX`` that the ``ssl`` module uses, so the OpenSSL cross-check of a client whose clock
is off (``clock_skew``) judges at the client's time, as the Windows engine does.

A connection copies its context's parameters when it is created (``SSL_new``), so
:class:`ClientTimeContext` sets the time from :data:`VERIFY_TIME` just before that, under a
lock: contexts are shared by clients with different clocks.

Where the library cannot be reached (another Python implementation, build or platform),
:func:`available` is False and OpenSSL judges at the system time, as before; a disagreement
that causes is reported as one (``agrees`` false), never silently.
"""

from __future__ import annotations

import contextvars
import ctypes
import datetime as dt
import functools
import ssl
import sys
import threading
from typing import Any

VERIFY_TIME: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar(
    "ibcm_lab_verify_time", default=None)
"""The instant the OpenSSL judge verifies at, for connections the current task opens."""

USE_CHECK_TIME = 0x2
"""``X509_V_FLAG_USE_CHECK_TIME``: set by ``X509_VERIFY_PARAM_set_time``."""

_LOCK = threading.Lock()


class _Lib:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.get0_param = lib.SSL_CTX_get0_param
        self.get0_param.restype = ctypes.c_void_p
        self.get0_param.argtypes = [ctypes.c_void_p]
        self.get_options = lib.SSL_CTX_get_options
        self.get_options.restype = ctypes.c_uint64
        self.get_options.argtypes = [ctypes.c_void_p]
        self.set_time = lib.X509_VERIFY_PARAM_set_time
        self.set_time.restype = None
        self.set_time.argtypes = [ctypes.c_void_p, ctypes.c_int64]


@functools.cache
def _library() -> _Lib | None:
    """The libssl the ``ssl`` module is linked to (looked up through ``_ssl`` itself, whose
    dependencies the dynamic linker searches), or None."""
    import _ssl  # the extension module: its own libssl and libcrypto
    import ctypes.util

    candidates: list[str | None] = [getattr(_ssl, "__file__", None)]
    for name in ("ssl", "libssl-3", "libssl-3-x64"):
        candidates.append(ctypes.util.find_library(name))
    for path in candidates:
        if not path:
            continue
        try:
            return _Lib(ctypes.CDLL(path))
        except (OSError, AttributeError):
            continue
    return None


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of ``ctx``: CPython's ``PySSLContext`` is ``PyObject_HEAD`` followed
    by ``SSL_CTX *ctx`` (Modules/_ssl.c, unchanged since 3.7)."""
    ptr = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    return int(ptr or 0)


def _set(lib: _Lib, ctx: ssl.SSLContext, when: dt.datetime) -> bool:
    ptr = _ssl_ctx_pointer(ctx)
    # Read before writing: the pointer must be this context's (same options as Python sees).
    if not ptr or lib.get_options(ptr) != int(ctx.options):
        return False
    param = lib.get0_param(ptr)
    if not param:
        return False
    lib.set_time(param, int(when.timestamp()))
    return bool(int(ctx.verify_flags) & USE_CHECK_TIME)


@functools.cache
def available() -> bool:
    """Whether OpenSSL's verification time can be set in this Python (checked once, on a
    context of its own)."""
    if sys.implementation.name != "cpython":  # the context's layout is CPython's
        return False
    lib = _library()
    if lib is None:
        return False
    try:
        return _set(lib, ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), dt.datetime.now(dt.UTC))
    except (OSError, ValueError, AttributeError):
        return False


def set_verify_time(ctx: ssl.SSLContext, when: dt.datetime) -> bool:
    """Make handshakes ``ctx`` starts from now on verify at ``when``; False if impossible."""
    lib = _library()
    return available() and lib is not None and _set(lib, ctx, when)


class ClientTimeContext(ssl.SSLContext):
    """An ``SSLContext`` whose connections verify at :data:`VERIFY_TIME` (when set and
    :func:`available`): the time is applied to the context and copied into the new
    connection in one step, under a lock, so clients sharing the context never mix clocks."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        when = VERIFY_TIME.get()
        if when is None:
            return super().wrap_bio(*args, **kwargs)
        with _LOCK:
            set_verify_time(self, when)
            return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        when = VERIFY_TIME.get()
        if when is None:
            return super().wrap_socket(*args, **kwargs)
        with _LOCK:
            set_verify_time(self, when)
            return super().wrap_socket(*args, **kwargs)


__all__ = ["VERIFY_TIME", "ClientTimeContext", "available", "set_verify_time"]
