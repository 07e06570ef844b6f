"""The simulated ConfigMgr client: ccmsetup, registration, site refresh, policy, inventory.

The decisions follow ConfigMgr as the reference documents it (reference §1, §2.3, §9):

* **Connection type.** ``CCMALWAYSINF=1``: always internet. Otherwise the client is on the
  intranet when it can reach a domain controller (domain-joined, inside) or an intranet MP
  it knows; otherwise on the internet.
* **MP choice.** Intranet: the MP list learned at the last site refresh, else ``SMSMP`` (its
  ``https://`` prefix decides HTTPS), else (domain-joined) the MP published in AD. Internet:
  the internet MP learned from the site (supplement 2), else ``CCMHOSTNAME``.
  Without ``/UsePKICert`` the client has no PKI certificate to offer and filters out every
  HTTPS MP.
* **CRL checking.** Until the first successful site refresh the ccmsetup command line
  governs (``/NoCRLCheck`` off = check); from then on the site's "Clients check the CRL for
  site systems" setting (bit 0x20 of the SSLState the MP reports) governs.
* **Install.** Only from the intranet or through a VPN, unless ``/source:`` points at local
  media (an internet-only install from media); ConfigMgr does not support installing from
  an internet-based MP (supplement 1).
* **ccmexec's start-up work.** After a successful install the SMS Agent Host (ccmexec) starts
  and, on its own, registers with its MP and then refreshes its site information (MP list,
  security settings): :data:`CCMEXEC_STARTUP` (reference §11.9). The driver
  (:mod:`lab.run`) runs them as automatic steps.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from lab import codes
from lab.client.certselect import select_certificate
from lab.client.winhttp import ClientCertFiles, WinHttp
from lab.codes import WinHttpFlag, https_state
from lab.configmgr.ccmsetup import CcmsetupCommand
from lab.pki.build import IssuedCert
from lab.protocols.network import Machine, Network
from lab.results.logline import LogLine, thread_id
from lab.results.observations import FailureKind, HttpOutcome, MpChoice, StepObservation
from lab.scenario.model import Action, ClientSpec, StepSpec, Zone

MPLIST_PATH = "/SMS_MP/.sms_aut?MPLIST"
REQUEST_PATH = "/ccm_system/request"
STEP_HEADER = "X-Lab-Step"
LOCATION_LOG = "LocationServices.log"
LOCATION_COMPONENT = "LocationServices"
CCMEXEC_STARTUP: tuple[Action, ...] = (Action.REGISTER, Action.LOCATION)
"""What ccmexec does on its own once ccmsetup has installed the client, in order: registration
("once ccmsetup successfully installs the client, registration initializes", reference §6.2
G), then a location request (at ccmexec start, reference §9) that brings the site's settings
(reference §11.9; the order of the two is the lab's model)."""
LAB_MARK = "Lab: "
"""How a log line the lab writes without a verified sample begins (as in the certutil-style
trace): it is the lab's model, not product output."""
URL_CACHE_ACTIONS = frozenset({Action.CLEAR_URL_CACHE, Action.RESYNC_CHAIN_CACHE,
                               Action.RESTART_AGENT_HOST})
"""Steps where an admin acts on CryptoAPI's URL cache: no request is sent."""


@dataclass(frozen=True)
class RegistrationFailure:
    """The last registration that failed while the client was not registered, as judged: a
    later policy or inventory step names it (and can be expected to fail with its codes)."""

    step: str
    """The step's number as reports print it (``1a``)."""
    automatic: bool
    summary: str
    """``CRYPT_E_REVOCATION_OFFLINE 0x80092013`` or ``CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E
    HTTP 403.4``."""
    identifiers: frozenset[str]
    fix: str
QUOTED_OPTIONS = frozenset({31, 63, 224})
"""The ``Options=`` values of CCMHTTP lines that reference §6.2 quotes (A: 63, B and C: 224,
D: 31). Any other value (192 for a ``/NoCRLCheck`` bootstrap is 224 less the CRL bit 0x20:
bit arithmetic, reference §1.5) is the lab's inference, so its line carries :data:`LAB_MARK`."""


def _options_mark(options: int) -> str:
    """:data:`LAB_MARK` for a CCMHTTP line whose ``Options=`` value no source quotes."""
    return "" if options in QUOTED_OPTIONS else LAB_MARK


@dataclass
class ClientState:
    installed: bool = False
    registered: bool = False
    client_id: str | None = None
    refreshed: bool = False
    site_ssl_state: int | None = None
    intranet_mps: tuple[str, ...] = ()
    internet_mp: str | None = None
    internet_mp_source: str = ""
    internet_mp_cleared: bool = False
    registration_failure: RegistrationFailure | None = None


class SimulatedClient:
    """One ConfigMgr client replaying its steps (see the module docstring)."""

    def __init__(self, spec: ClientSpec, *, network: Network, http: WinHttp,
                 ad_mp: Callable[[Machine], tuple[str, bool] | None],
                 store: tuple[IssuedCert, ...] = ()) -> None:
        self.spec = spec
        self.store = store
        """The computer's Personal store (client authentication candidates)."""
        http.skew = spec.clock_skew
        self.cmd: CcmsetupCommand = spec.ccmsetup
        self.network = network
        self.http = http
        self.ad_mp = ad_mp
        """The MP published in AD for the site, (FQDN, HTTPS?), if the machine can read AD
        from where it is."""
        self.domain = http.machine.domain
        self.state = ClientState()
        self.guid = "GUID:" + str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.fqdn)).upper()
        self.pending_notes: list[str] = []
        """Notes for the next step (how the URL cache was filled before the first)."""

    # -- decisions ------------------------------------------------------------------------
    def machine(self, zone: Zone) -> Machine:
        return Machine(self.spec.name, zone, self.spec.domain_joined, self.domain)

    def connection_type(self, machine: Machine) -> str:
        if self.cmd.always_internet:
            return "internet"
        if self.network.can_reach_dc(machine):
            return "intranet"
        known = list(self.state.intranet_mps)
        if self.cmd.smsmp is not None:
            known.append(self.cmd.smsmp.host)
        known += [m.host for m in self.cmd.mp]
        if any(self.network.can_resolve(machine, h) for h in known):
            return "intranet"
        return "internet"

    def crl_setting(self) -> tuple[bool, str, int]:
        """(check the CRL?, why, the Options value CCMHTTP logs)."""
        if self.state.refreshed and self.state.site_ssl_state is not None:
            ssl_state = self.state.site_ssl_state
            check = bool(ssl_state & codes.CRL_BIT)
            return (check, f"the site's setting learned at the last site refresh "
                    f"(SSLState={ssl_state}: CRL checking {'on' if check else 'off'})", ssl_state)
        check = not self.cmd.no_crl_check
        why = ("ccmsetup /NoCRLCheck (it governs only until the first site refresh)"
               if self.cmd.no_crl_check
               else "ccmsetup without /NoCRLCheck (bootstrap: CRL checking on)")
        return check, why, https_state(False, check)

    def choose_mp(self, connection: str, machine: Machine) -> MpChoice | None:
        if connection == "internet":
            if self.state.internet_mp:
                return MpChoice(self.state.internet_mp, True, self.state.internet_mp_source)
            return None
        if self.state.refreshed and self.state.intranet_mps:
            https = bool(self.state.site_ssl_state is not None
                         and self.state.site_ssl_state & 0x1)
            return MpChoice(self.state.intranet_mps[0], https,
                            "the MP list learned at the last site refresh")
        if self.cmd.smsmp is not None:
            why = f"SMSMP={self.cmd.smsmp.raw}"
            if not self.cmd.smsmp.https:
                why += ", written without https://, so HTTP"
            return MpChoice(self.cmd.smsmp.host, self.cmd.smsmp.https, why)
        return self._ad_choice(machine)

    def _ad_choice(self, machine: Machine) -> MpChoice | None:
        ad = self.ad_mp(machine)
        if ad is None:
            return None
        return MpChoice(ad[0], ad[1], "the MP published in Active Directory")

    # -- requests ---------------------------------------------------------------------------
    async def _send(self, obs: StepObservation, mp: MpChoice, method: str, path: str, *,
                    step_id: str, user_agent: str, body: str | None = None,
                    log_file: str, component: str) -> HttpOutcome:
        crl, _why, options = obs.crl_check, obs.crl_source, obs.options
        scheme = "https" if mp.https else "http"
        url = f"{scheme}://{mp.host}{path}"
        out = await self.http.request(
            method, url, crl_check=bool(crl), body=body.encode() if body else None,
            headers={"User-Agent": user_agent, STEP_HEADER: step_id})
        obs.requests.append(out)
        self._log_request(obs, out, options or 0, log_file, component)
        return out

    def _log(self, obs: StepObservation, file: str, component: str, text: str,
             severity: int = 1, source: str = "") -> None:
        obs.log.append(LogLine(file, component, text, severity, self.http.clock.now(),
                               thread_id(self.spec.name, component), source))

    def _log_request(self, obs: StepObservation, out: HttpOutcome, options: int,
                     log_file: str, component: str) -> None:
        def line(text: str, severity: int = 1) -> None:
            self._log(obs, log_file, component, text, severity)

        base_url = out.url.split("?", 1)[0] if out.method != "GET" else out.url
        for u in out.verdict.revocation.urls if out.verdict is not None else ():
            if u.origin in ("memory", "disk") and u.result == "failed":
                line(f"{LAB_MARK}CryptoAPI did not retrieve {u.url} again: it failed earlier "
                     "in this step (the lab's assumption)")
            elif u.origin in ("memory", "disk"):
                line(f"{LAB_MARK}CryptoAPI took {u.url} from its {u.origin} URL cache "
                     "(not retrieved)")
        err = out.winhttp_error
        if err is not None:
            line(f"{_options_mark(options)}[CCMHTTP] ERROR: URL={base_url}, Port={out.port}, "
                 f"Options={options}, Code={err.value}, Text={err.name}", 3)
            if err is codes.ERROR_WINHTTP_SECURE_FAILURE and out.flags:
                line("[CCMHTTP] AsyncCallback():", 3)
                line("[CCMHTTP] AsyncCallback(): WINHTTP_CALLBACK_STATUS_SECURE_FAILURE "
                     "Encountered", 3)
                line("[CCMHTTP]            : dwStatusInformationLength is 4", 3)
                line(f"[CCMHTTP]            : lpvStatusInformation is 0x{out.flags:x}", 3)
                for flag in WinHttpFlag:
                    if flag.value & out.flags:
                        line(f"[CCMHTTP]            : {flag.long_name} is set", 3)
        elif out.status is not None and out.status != 200:
            line(f"{_options_mark(options)}[CCMHTTP] ERROR: URL={base_url}, Port={out.port}, "
                 f"Options={options}, Code=0, Text={codes.CCM_E_BAD_HTTP_STATUS_CODE.name}", 3)
            line(f"[CCMHTTP] ERROR INFO: StatusCode={out.status} StatusText={out.reason}", 3)
        if not out.ok and out.method == "CCM_POST":
            line(f"Post to {base_url} failed with "
                 f"0x{codes.CCM_TRANSIENT_ERROR.value:08x}.", 3)

    def _judge_request(self, obs: StepObservation, out: HttpOutcome) -> bool:
        if out.ok:
            return True
        if out.connect_error is not None and (out.verdict is None or out.verdict.ok):
            obs.fail(FailureKind.CONNECT, out.connect_error, out.connect_detail)
        elif out.verdict is not None and not out.verdict.ok:
            obs.fail(FailureKind.TLS, out.verdict.error,
                     "; ".join(p.detail for p in out.verdict.problems))
        else:
            obs.fail(FailureKind.HTTP, codes.CCM_E_BAD_HTTP_STATUS_CODE,
                     f"the MP answered HTTP {out.status} {out.reason}")
        if out.method == "CCM_POST":
            obs.extra_identifiers.update(codes.CCM_TRANSIENT_ERROR.identifiers())
        return False

    # -- steps ------------------------------------------------------------------------------
    def registration_judged(self, failure: RegistrationFailure | None) -> None:
        """What the client's last registration got, as judged (the driver tells it after
        every register step, automatic or not): a failure while the client is not registered
        is kept for later steps to name; a success clears it."""
        self.state.registration_failure = None if self.state.registered else failure

    async def run_step(self, step: StepSpec, step_id: str, *,
                       automatic: bool = False) -> StepObservation:
        """One step; ``automatic``: ccmexec runs it on its own after an install."""
        machine = self.machine(step.location)
        self.http.machine = machine
        obs = StepObservation(step.action, step.location)
        obs.connection = self.connection_type(machine)
        obs.crl_check, obs.crl_source, obs.options = self.crl_setting()
        self.http.url_cache.begin_step()
        obs.kept_notes.extend(self.pending_notes)
        self.pending_notes.clear()
        if step.action in URL_CACHE_ACTIONS:
            obs.kept_notes.append(self._url_cache_action(step.action))
            return obs
        if automatic and step.action is CCMEXEC_STARTUP[0]:
            self._log(obs, "CcmExec.log", "CcmExec",
                      f"{LAB_MARK}the SMS Agent Host (ccmexec) started after ccmsetup installed "
                      "the client; on its own it registers (ClientIDManagerStartup.log), then "
                      "refreshes its site information (LocationServices.log)")
        if step.action is Action.INSTALL:
            await self._install(obs, machine, step_id)
            return obs
        if step.action is Action.BROWSE_MPLIST:
            await self._browse(obs, machine, step_id)
            return obs
        if not self.state.installed:
            obs.fail(FailureKind.NOT_INSTALLED, codes.LAB_CLIENT_NOT_INSTALLED,
                     "no earlier install step succeeded, so there is no client agent")
            return obs
        if step.action in (Action.POLICY, Action.INVENTORY) and not self.state.registered:
            self._not_registered(obs)
            return obs
        if step.action is Action.CLEAR_INTERNET_FQDN:
            before = self.state.internet_mp
            self.state.internet_mp = None
            self.state.internet_mp_source = ""
            self.state.internet_mp_cleared = True
            obs.notes.append(f"The Internet FQDN {before or '(none)'} was deleted on the client")
            return obs
        mp = self._pick(obs, machine)
        if mp is None:
            return obs
        if step.action is Action.REGISTER:
            await self._register(obs, mp, step_id, automatic=automatic)
        elif step.action is Action.LOCATION:
            await self._location(obs, mp, step_id)
        else:
            endpoint = "MP_PolicyManager" if step.action is Action.POLICY else "MP_HinvEndpoint"
            out = await self._send(obs, mp, "CCM_POST", REQUEST_PATH, step_id=step_id,
                                   user_agent="ccmhttp", body=self._message(endpoint),
                                   log_file="CcmMessaging.log", component="CcmMessaging")
            self._judge_request(obs, out)
        return obs

    def _not_registered(self, obs: StepObservation) -> None:
        failed = self.state.registration_failure
        if failed is None:
            obs.fail(FailureKind.NOT_REGISTERED, codes.LAB_CLIENT_NOT_REGISTERED,
                     "the client is not registered with the site (no registration "
                     "succeeded), so the MP would not accept its messages")
            return
        which = (f"the automatic registration after install (step {failed.step}, ccmexec "
                 "start-up)" if failed.automatic else f"the registration at step {failed.step}")
        obs.fail(FailureKind.NOT_REGISTERED, codes.LAB_CLIENT_NOT_REGISTERED,
                 f"the client is not registered with the site: {which} failed with "
                 f"{failed.summary}, so the MP would not accept its messages")
        obs.extra_identifiers.update(failed.identifiers)
        obs.earlier_fix = failed.fix

    def _url_cache_action(self, action: Action) -> str:
        """What an admin does to CryptoAPI's URL cache (reference §5.2b), as a note."""
        cache = self.http.url_cache
        if action is Action.CLEAR_URL_CACHE:
            n = cache.delete_disk()
            return (f"certutil -urlcache * delete: {n} object(s) deleted from the disk cache "
                    "(CryptnetUrlCache); the running SMS Agent Host keeps its memory copies")
        if action is Action.RESTART_AGENT_HOST:
            n = cache.drop_memory()
            return (f"The SMS Agent Host service restarted: {n} object(s) dropped from its "
                    "memory URL cache; the disk cache stays")
        n = cache.resync(self.http.machine_now())
        return (f"certutil -setreg chain\\ChainCacheResyncFiletime @now: {n} cached object(s) "
                "no longer used, from memory or disk (Lab: the lab's reading of \"forces a "
                "re-sync\")")

    def _pick(self, obs: StepObservation, machine: Machine) -> MpChoice | None:
        mp = self.choose_mp(obs.connection, machine)
        if mp is None:
            if obs.connection == "internet":
                why = ("its Internet FQDN was deleted on the client and no site refresh on the "
                       "intranet has set it again since" if self.state.internet_mp_cleared else
                       "it was installed without CCMHOSTNAME and has not refreshed its site "
                       "information on the intranet, where it would have learned the internet MP")
                obs.fail(FailureKind.NO_INTERNET_MP, codes.LAB_NO_INTERNET_MP,
                         f"the client is on the internet but knows no internet-facing MP: {why}")
            else:
                obs.fail(FailureKind.NO_MP, codes.CCM_MP_NOT_FOUND,
                         "no SMSMP was given and the machine cannot look the MP up in AD")
            return None
        obs.mp = mp
        return mp if self._pki_usable(obs, mp) else None

    def _pki_usable(self, obs: StepObservation, mp: MpChoice) -> bool:
        """An HTTPS MP needs /UsePKICert and a client certificate (reference §1.2, §11.7)."""
        if not mp.https:
            return True
        if not self.cmd.use_pki_cert:
            obs.fail(FailureKind.NO_PKI, codes.CCM_MP_NOT_FOUND,
                     f"{mp.host} accepts HTTPS only, and without /UsePKICert the client "
                     "filters out every HTTPS management point")
            return False
        selection = select_certificate(self.store, self.cmd, self.spec.fqdn,
                                       self.http.machine_now())
        if selection.cert is not None:
            self.http.client_cert = ClientCertFiles(selection.cert.chain_path,
                                                    selection.cert.key_path)
            if obs.action in (Action.INSTALL, Action.REGISTER):
                obs.notes.append(f"Client certificate: {selection.detail}")
        else:
            self.http.client_cert = None
            obs.fail(FailureKind.NO_CLIENT_CERT, selection.error,
                     f"{selection.detail}, so the client cannot use PKI and filters out HTTPS "
                     "management points")
            obs.extra_identifiers.update(codes.CCM_E_NO_CLIENT_PKI_CERT.identifiers())
            # The URL of the request the step would have sent first: install and location
            # begin with the MP list, the others with a CCM_POST.
            path = MPLIST_PATH if obs.action in (Action.INSTALL, Action.LOCATION) \
                else REQUEST_PATH
            file, component = {
                Action.INSTALL: ("ccmsetup.log", "ccmsetup"),
                Action.LOCATION: (LOCATION_LOG, LOCATION_COMPONENT),
            }.get(obs.action, ("CcmMessaging.log", "CcmMessaging"))
            self._log(obs, file, component,
                      f"{_options_mark(obs.options or 0)}[CCMHTTP] ERROR: "
                      f"URL=https://{mp.host}{path}, Port=0, Options={obs.options}, Code=0, "
                      "Text=CCM_E_NO_CLIENT_PKI_CERT", 3)
            return False
        return True

    def _message(self, endpoint: str, body: str = "") -> str:
        return (f"<Msg SchemaVersion=\"1.1\"><TargetEndpoint>{endpoint}</TargetEndpoint>"
                f"<SourceID>{self.guid}</SourceID><SourceHost>{self.spec.fqdn}</SourceHost>"
                f"{body}</Msg>")

    async def _install(self, obs: StepObservation, machine: Machine, step_id: str) -> None:
        cmd = self.cmd
        self._log(obs, "ccmsetup.log", "ccmsetup",
                  f"==========[ ccmsetup started in process {thread_id(self.spec.name, 'pid')} "
                  "]==========")
        if obs.connection == "internet" and cmd.source:
            self._installed(obs, f"from the local media in /source:{cmd.source[0]}")
            return
        # ccmsetup's bootstrap MP: /mp:, else the MP published in AD, else SMSMP.
        mp: MpChoice | None
        if cmd.mp:
            entry = cmd.mp[0]
            https = entry.https or (entry.scheme is None and cmd.use_pki_cert)
            mp = MpChoice(entry.host, https, f"/mp:{entry.raw}")
        else:
            mp = self._ad_choice(machine) or self.choose_mp("intranet", machine)
        if obs.connection == "internet":
            obs.fail(FailureKind.INSTALL_FROM_INTERNET, codes.LAB_INSTALL_FROM_INTERNET,
                     "the machine is on the internet without a VPN; ccmsetup needs the "
                     "intranet (or /source: media for an internet-only install)")
            if mp is not None:
                obs.mp = mp
                out = await self._send(obs, mp, "GET", MPLIST_PATH, step_id=step_id,
                                       user_agent="ccmsetup", log_file="ccmsetup.log",
                                       component="ccmsetup")
                if out.winhttp_error is not None:
                    obs.extra_identifiers.update(out.winhttp_error.identifiers())
                    obs.notes.append(f"The ccmsetup bootstrap could not reach {mp.host}: "
                                     f"{out.connect_detail}" if out.connect_detail else
                                     f"The ccmsetup bootstrap could not reach {mp.host}")
            return
        if mp is None:
            obs.fail(FailureKind.NO_MP, codes.CCM_MP_NOT_FOUND,
                     "ccmsetup has no /mp:, no SMSMP and cannot look the MP up in AD")
            return
        obs.mp = mp
        if not self._pki_usable(obs, mp):
            return
        out = await self._send(obs, mp, "GET", MPLIST_PATH, step_id=step_id,
                               user_agent="ccmsetup", log_file="ccmsetup.log",
                               component="ccmsetup")
        if self._judge_request(obs, out):
            self._installed(obs, f"from the MP {mp.host}")

    async def _browse(self, obs: StepObservation, machine: Machine, step_id: str) -> None:
        """An admin checks the MP in a browser (reference §8.2): no computer certificate."""
        if obs.connection == "internet":
            host = self.state.internet_mp or self.cmd.ccmhostname
        else:
            known = self.choose_mp("intranet", machine)
            host = known.host if known else None
        if host is None:
            obs.fail(FailureKind.NO_MP, codes.CCM_MP_NOT_FOUND,
                     "the machine knows no MP name to browse to")
            return
        obs.mp = MpChoice(host, True, "the MP name the admin types into the browser")
        obs.crl_check, obs.crl_source = False, "the browser (it does not hard-fail on revocation)"
        out = await self.http.request(
            "GET", f"https://{host}{MPLIST_PATH}", crl_check=False, present_cert=False,
            headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                     STEP_HEADER: step_id})
        obs.requests.append(out)
        if self._judge_request(obs, out):
            obs.notes.append("The browser shows the MPList XML")
        elif obs.failure is FailureKind.HTTP:
            obs.error = None  # a browser shows the status, not a ConfigMgr code
            obs.extra_identifiers.clear()

    def _installed(self, obs: StepObservation, how: str) -> None:
        self.state.installed = True
        if self.cmd.ccmhostname and not self.state.internet_mp:
            self.state.internet_mp = self.cmd.ccmhostname
            self.state.internet_mp_source = f"CCMHOSTNAME={self.cmd.ccmhostname}"
        obs.notes.append(f"The client agent was installed {how}")
        # ccmsetup's last line (reference §6.2 K); ccmexec's start-up work follows.
        self._log(obs, "ccmsetup.log", "ccmsetup", "CcmSetup is exiting with return code 0")

    async def _register(self, obs: StepObservation, mp: MpChoice, step_id: str, *,
                        automatic: bool = False) -> None:
        site = self.cmd.site_code
        if automatic and not self.state.registered and site and site.upper() != "AUTO":
            # A new client's first lines (reference §6.2 G, the Entra workflow page's sample).
            self._log(obs, "ClientIDManagerStartup.log", "ClientIDManagerStartup",
                      f"RegEndPoint: Received notification for site assignment change from "
                      f"'<none>' to '{site.upper()}'.")
        self._log(obs, "ClientIDManagerStartup.log", "ClientIDManagerStartup",
                  "[RegTask] - Starting registration, attempt 1.")
        if self.state.registered:
            self._log(obs, "ClientIDManagerStartup.log", "ClientIDManagerStartup",
                      f"{LAB_MARK}the client is already registered (ClientID "
                      f"{self.state.client_id}); it sends its registration request again")
        else:
            self._log(obs, "ClientIDManagerStartup.log", "ClientIDManagerStartup",
                      f"[RegTask] - Client is not registered. Sending registration request "
                      f"for {self.guid} ...")
        body = self._message("MP_ClientRegistration", f"<ClientID>{self.guid}</ClientID>")
        out = await self._send(obs, mp, "CCM_POST", REQUEST_PATH, step_id=step_id,
                               user_agent="ccmhttp", body=body, log_file="CcmMessaging.log",
                               component="CcmMessaging")
        if not self._judge_request(obs, out):
            return
        try:
            reply = ET.fromstring(out.body)
            client_id = reply.get("ClientID") or self.guid
            approval = reply.get("ApprovalStatus") or "1"
        except ET.ParseError:
            obs.fail(FailureKind.HTTP, codes.CCM_E_BAD_HTTP_STATUS_CODE,
                     "the MP's reply is not XML")
            return
        self.state.registered = True
        self.state.client_id = client_id
        self._log(obs, "ClientIDManagerStartup.log", "ClientIDManagerStartup",
                  f"[RegTask] - Client is registered. Server assigned ClientID is "
                  f"{client_id}. Approval status {approval}")

    async def _location(self, obs: StepObservation, mp: MpChoice, step_id: str) -> None:
        """A site refresh: the MP list and the site's security settings (LocationServices).

        Its requests' CCMHTTP lines go to LocationServices.log (reference §6.2 A, D); a failed
        refresh adds the lines of reference §6.2 E, a good one a ``Lab:`` line (no verified
        sample shows what LocationServices.log says then).
        """
        kw = {"step_id": step_id, "user_agent": "SMS CCM 5.0", "log_file": LOCATION_LOG,
              "component": LOCATION_COMPONENT}
        out = await self._send(obs, mp, "GET", MPLIST_PATH, **kw)
        if not self._judge_request(obs, out):
            self._location_failed(obs, mp)
            return
        out = await self._send(obs, mp, "CCM_POST", REQUEST_PATH,
                               body=self._message("MP_LocationManager"), **kw)
        if not self._judge_request(obs, out):
            self._location_failed(obs, mp)
            return
        try:
            reply = ET.fromstring(out.body)
        except ET.ParseError:
            obs.fail(FailureKind.HTTP, codes.CCM_E_BAD_HTTP_STATUS_CODE,
                     "the MP's reply is not XML")
            self._location_failed(obs, mp)
            return
        site = reply.find("Site")
        ssl_state = int(site.get("SSLState", "0")) if site is not None else 0
        mps = reply.findall("ManagementPoints/MP")
        self.state.refreshed = True
        self.state.site_ssl_state = ssl_state
        self.state.intranet_mps = tuple(m.get("FQDN", "") for m in mps if m.get("Internet") == "0")
        internet = [m.get("FQDN", "") for m in mps if m.get("Internet") == "1"]
        check = bool(ssl_state & codes.CRL_BIT)
        self._log(obs, LOCATION_LOG, LOCATION_COMPONENT,
                  f"{LAB_MARK}refreshed the management point list and the site's security "
                  f"settings from {mp.host}: intranet MPs "
                  f"{', '.join(self.state.intranet_mps) or 'none'}, internet MP "
                  f"{internet[0] if internet else 'none'}, SSLState={ssl_state} "
                  f"(CRL checking {'on' if check else 'off'})")
        if internet:
            if internet[0] != self.state.internet_mp:
                # The shape of ClientLocation.log's verified sample (reference §6.2 H).
                self._log(obs, "ClientLocation.log", "ClientLocation",
                          f"Rotating internet management point, new management point [1] is: "
                          f"https://{internet[0]} (0) with capabilities: <Capabilities "
                          f"SchemaVersion =\"1.0\"><Property Name=\"SSL\" Version=\"1\" />"
                          f"</Capabilities>")
            self.state.internet_mp = internet[0]
            self.state.internet_mp_source = "the internet MP learned from the site"
            self.state.internet_mp_cleared = False
            obs.notes.append(f"Learned the internet MP {internet[0]} from the site")
        obs.notes.append(f"Learned the site's security settings: SSLState={ssl_state}, "
                         f"CRL checking {'on' if check else 'off'} from now on")

    def _location_failed(self, obs: StepObservation, mp: MpChoice) -> None:
        """LocationServices.log after a failed site refresh, in the words of reference §6.2 E
        (a CMG there, ``HOST/CCM_Proxy_MutualAuth/ID``; an MP here, its FQDN). The internet
        MP list line only on the internet, where the sample was taken; the client keeps the
        internet MP it knew."""
        self._log(obs, LOCATION_LOG, LOCATION_COMPONENT,
                  f"Failed to send management point list Location Request Message to {mp.host}",
                  3)
        if obs.connection == "internet":
            self._log(obs, LOCATION_LOG, LOCATION_COMPONENT,
                      f"LSUpdateInternetManagementPoints: Failed to retrieve internet MPs from "
                      f"MP {mp.host} with error 0x{codes.CCM_TRANSIENT_ERROR.value:08x}, "
                      "retaining previous list.", 3)
