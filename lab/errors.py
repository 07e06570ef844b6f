"""Every exception the lab raises, in one place.

Hierarchy (each class carries the process exit code the CLI maps it to)::

    LabError                      exit 2  base class, never raised directly
    ├── UsageError                exit 2  bad command-line usage (missing path, bad flag value)
    │   ├── SwitchError           exit 2  a training-console switch with a value it does not
    │   │                                 take (the console's HTTP API answers 400)
    │   └── LimitExceeded         exit 2  untrusted input over one of the caps of
    │                                     ``lab.limits`` (the message names the cap and the
    │                                     environment variable that raises it)
    ├── ScenarioError             exit 2  a scenario file is unusable (syntax, unknown key,
    │   │                                 wrong type, dangling reference, impossible combination)
    │   └── CcmsetupSyntaxError   exit 2  a ccmsetup command line cannot be parsed
    ├── PKIBuildError             exit 2  the PKI description cannot be turned into certificates
    ├── HarnessError              exit 2  the servers could not be started or stopped
    ├── LdapProtocolError         exit 2  bytes that are not the LDAP PDU expected (the
    │                                     directory answers with a notice of disconnection;
    │                                     the client's retrieval fails); never leaves the lab
    ├── SimulatedClientError      exit 2  the simulated client hit an internal inconsistency
    └── BenchError                exit 2  ``ibcm-lab bench`` could not make a measurement

A failing *verdict* (an expectation that is not met, a TLS handshake that is refused) is
data in a step result, never an exception. Exceptions are for input the lab cannot use and
for bugs; the CLI turns every ``LabError`` into one message and its exit code.
"""

from __future__ import annotations

from typing import ClassVar


def _one_line(text: str) -> str:
    """``text`` with control characters escaped, so an error is always one terminal line."""
    from lab.names import printable

    return printable(text)


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""

    exit_code: ClassVar[int] = 2


class UsageError(LabError):
    """The command line given to ``ibcm-lab`` is not usable."""


class SwitchError(UsageError):
    """A switch of the training console (``ibcm-lab ui``) got a value it does not take.

    ``key`` names the switch (``site_crl``), ``expected`` says what it takes; the console's
    HTTP API answers 400 with both, as JSON."""

    def __init__(self, key: str, expected: str, got: object = None) -> None:
        shown = "" if got is None else f", got {_one_line(repr(got))[:80]}"
        super().__init__(f"{_one_line(key)[:80]}: expected {expected}{shown}")
        self.key = key
        self.expected = expected


class LimitExceeded(UsageError):
    """Untrusted input (a certificate file, a zip, a log) goes over a cap of
    :mod:`lab.limits`; ``limit`` names the cap (its environment variable raises it)."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class ScenarioError(LabError, ValueError):
    """A scenario file (or scenario object) cannot be used.

    ``file`` is the path of the scenario, ``key`` the dotted key path inside it
    (``client[0].step[1].expect``) and ``line`` the 1-based line number when known.
    The string form is one line a user can act on::

        scenarios/x.toml:12: client[0].step[1].location: expected one of ...
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.key = key
        self.line = line

    def located(
        self, *, file: str | None = None, line: int | None = None, key: str | None = None
    ) -> ScenarioError:
        """Return a copy with the location filled in where it was still unknown."""
        err = type(self)(
            self.message,
            file=self.file or file,
            key=self.key or key,
            line=self.line if self.line is not None else line,
        )
        err.__cause__ = self.__cause__
        return err

    def __str__(self) -> str:
        where = _one_line(self.file or "<scenario>")
        if self.line is not None:
            where += f":{self.line}"
        if self.key:
            return f"{where}: {_one_line(self.key)}: {_one_line(self.message)}"
        return f"{where}: {_one_line(self.message)}"


class CcmsetupSyntaxError(ScenarioError):
    """A ccmsetup command line is malformed or names an unknown parameter or property.

    ``token_index`` is the 0-based index (in the Windows-split command line, program
    included) of the argument the message is about, when the parser knows it."""

    token_index: int | None = None


class PKIBuildError(LabError):
    """The PKI description cannot be built (for example a cache that cannot be written)."""


class HarnessError(LabError):
    """The lab's servers could not be started."""


class LdapProtocolError(LabError):
    """Bytes on an LDAP connection that are not the PDU expected (malformed BER, a PDU above
    the size limit, an operation in the wrong place). The directory answers the peer with a
    notice of disconnection and closes that connection; CryptoAPI's retrieval fails the URL.
    It is data about a connection, caught where it is raised."""


class SimulatedClientError(LabError):
    """The simulated client reached a state its model does not cover (a lab bug)."""


class BenchError(LabError):
    """A measurement could not be made (a subprocess failed, a server did not start)."""
