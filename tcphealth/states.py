"""What each TCP state is, and what it says about a connection that stays in it.

This is the one table of state knowledge in tcphealth: ``tcphealth explain STATE`` prints it, and
the diagnosis rules use its clocks (how long the kernel lets a state last on this host). How long
a state lasts depends on sysctls; :func:`explain` computes it from the host's values and, where a
value is unknown, from the Linux default -- and says so in :attr:`StateExplanation.assumed`.

Example::

    >>> from tcphealth.model import Sysctls, TcpState
    >>> explain(TcpState.SYN_SENT, Sysctls(tcp_syn_retries=3)).limit_seconds
    15.0
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from tcphealth.model import Blame, Sysctls, TcpState, parse_state

# Linux defaults for the settings that set a state's clock (ip-sysctl.rst). tcp_max_tw_buckets
# is missing on purpose: its default is sized from memory at boot, so there is none to assume.
LINUX_DEFAULTS: dict[str, int] = {
    "tcp_syn_retries": 6,
    "tcp_synack_retries": 5,
    "tcp_fin_timeout": 60,
    "tcp_orphan_retries": 0,
    "tcp_retries2": 15,
    "tcp_keepalive_time": 7200,
    "tcp_keepalive_intvl": 75,
    "tcp_keepalive_probes": 9,
    "tcp_tw_reuse": 2,
    "tcp_syncookies": 1,
    "tcp_abort_on_overflow": 0,
    "somaxconn": 4096,
}
DEFAULT_PORT_RANGE: tuple[int, int] = (32768, 60999)
_DEFAULT_NOTES: dict[str, str] = {"somaxconn": "Linux default since 5.4, 128 before"}

TIME_WAIT_SECONDS = 60.0  # TCP_TIMEWAIT_LEN: compiled into the kernel, no sysctl changes it
_RTO_MAX = 120.0  # TCP_RTO_MAX: a retransmission timeout never grows past this
_RTO_MIN = 0.2  # TCP_RTO_MIN: the smallest timeout, used for data on a fast path
_SYN_RTO = 1.0  # TCP_TIMEOUT_INIT: the first SYN / SYN-ACK timeout


def retransmission_budget(retries: int, first_timeout: float) -> float:
    """Seconds from the first transmission until the kernel gives up after ``retries`` retries.

    Each timeout doubles, up to 120 s; this mirrors the kernel's ``tcp_model_timeout``.
    With SYNs (first timeout 1 s) and the default 6 retries: 1+2+4+...+64 = 127 s.

    >>> retransmission_budget(6, 1.0)
    127.0
    >>> round(retransmission_budget(15, 0.2), 1)
    924.6
    """
    # A snapshot file may say anything; a negative count of retries means none.
    retries = max(retries, 0)
    doubling_steps = int(math.log2(_RTO_MAX / first_timeout))
    if retries <= doubling_steps:
        return float(((2 << retries) - 1) * first_timeout)
    return ((2 << doubling_steps) - 1) * first_timeout + (retries - doubling_steps) * _RTO_MAX


@dataclass(frozen=True)
class SynSchedule:
    """How an unanswered connect() goes on: SYNs sent again, when the last of them leaves, and
    when the attempt fails (seconds from the first SYN)."""

    retransmissions: int
    last_retry_seconds: float
    give_up_seconds: float
    # Of the retransmissions, how many leave one initial timeout (1 s) after the one before,
    # with tcp_syn_linear_timeouts; 0 where every timeout doubles.
    spaced_evenly: int


def syn_schedule(retries: int, linear_timeouts: int | None = None) -> SynSchedule:
    """The SYN retransmissions of a connect() nobody answers, as the kernel times them.

    The kernel checks at each retransmission timer whether the time a doubling schedule takes
    for ``retries`` retries (:func:`retransmission_budget`) has passed, and if so gives up.
    With ``net.ipv4.tcp_syn_linear_timeouts`` (``linear_timeouts``; ``None``: a kernel without
    it), the timeout stays at 1 s for that many retries plus one before it starts doubling:
    more SYNs fit into the same time, and the timer that ends the attempt fires a little after
    it. Measured in network namespaces (tests/test_live_syn_schedule.py): 6 retries and 4
    linear timeouts give 10 SYNs resent, at 1, 2, 3, 4, 5, 7, 11, 19, 35 and 67 s, and
    ETIMEDOUT at 131 s; without linear timeouts, 6 resent and ETIMEDOUT at 127 s.

    >>> syn_schedule(6, 4)
    SynSchedule(retransmissions=10, last_retry_seconds=67.0, give_up_seconds=131.0, spaced_evenly=5)
    >>> syn_schedule(6)
    SynSchedule(retransmissions=6, last_retry_seconds=63.0, give_up_seconds=127.0, spaced_evenly=0)
    """
    linear = max(linear_timeouts or 0, 0)
    budget = retransmission_budget(retries, _SYN_RTO)
    # Worked out in three stretches rather than timer by timer: a snapshot file may hold any
    # number, and 10**9 retries must not mean 10**9 turns of a loop.
    # 1. The first linear + 1 timeouts are all the initial one.
    even = linear + 1
    if budget <= even * _SYN_RTO:
        firings = math.ceil(budget / _SYN_RTO)
        sent = firings - 1
        # Every retry here came one initial timeout after the one before.
        return SynSchedule(sent, sent * _SYN_RTO, firings * _SYN_RTO, sent if linear else 0)
    spaced = even if linear else 0
    sent = even
    elapsed = last = even * _SYN_RTO
    # 2. Doubling, until the timeout reaches its cap: a few turns.
    timeout = 2 * _SYN_RTO
    while timeout < _RTO_MAX:
        elapsed += timeout
        if elapsed >= budget:
            return SynSchedule(sent, last, elapsed, spaced)
        sent += 1
        last = elapsed
        timeout *= 2
    # 3. 120 s a timeout until the budget is spent.
    turns = math.ceil((budget - elapsed) / _RTO_MAX)
    if turns > 1:
        last = elapsed + (turns - 1) * _RTO_MAX
    return SynSchedule(sent + turns - 1, last, elapsed + turns * _RTO_MAX, spaced)


def stalled_seconds_left(
    retries2: int, retransmits: int, rto_seconds: float, timer_left: float
) -> float:
    """Seconds from now until the kernel gives up on a connection whose data goes unanswered
    (ETIMEDOUT), from what ss shows of it: ``retransmits`` timeouts so far (retrans), the
    current, already doubled timeout ``rto_seconds`` (tcp_info rto) and the time left on the
    retransmission timer (``timer:(on,…)``).

    The kernel checks at each firing of the timer whether the time since the first
    unacknowledged send has reached :func:`retransmission_budget` (``tcp_retries2``, from a
    200 ms timeout) and ends the connection at the first firing that finds it has. The
    timeouts so far are the first one doubled ``retransmits`` times, so the elapsed time at
    the next firing is known, and the firings after it follow the doubling (to the 120 s cap).
    Measured in network namespaces (tests/test_live_limits.py) against ETIMEDOUT.

    >>> stalled_seconds_left(3, 2, 0.8, 0.5)  # firings at 0.2, 0.6, 1.4, 3.0 s: one to go
    2.1
    """
    retransmits = max(retransmits, 0)
    budget = retransmission_budget(retries2, _RTO_MIN)
    # The first timeout, undoubled; where the cap was reached this is a lower estimate.
    first = max(rto_seconds / (1 << min(retransmits, 30)), _RTO_MIN / 2)
    # The firings are counted, not walked one by one: a snapshot may say 4,294,967,295
    # retransmissions (and a sysctl as many retries), and once the timeout is at its cap each
    # firing adds the same 120 s. Only the doubling before the cap (a few dozen turns at
    # most) is walked. (A timeout above the cap, which no kernel reports, is taken once, as
    # given, before the cap applies.)
    elapsed = 0.0  # since the first send, at each firing
    timeout = first
    firings = retransmits + 1
    while firings and timeout != _RTO_MAX:
        elapsed += timeout
        timeout = min(timeout * 2, _RTO_MAX)
        firings -= 1
    elapsed += firings * timeout
    left = timer_left
    # The kernel does not check at a firing that finds no retransmission yet (the first).
    if retransmits == 0:
        elapsed += timeout
        left += timeout
        timeout = min(timeout * 2, _RTO_MAX)
    while elapsed < budget and timeout != _RTO_MAX:
        elapsed += timeout
        left += timeout
        timeout = min(timeout * 2, _RTO_MAX)
    if elapsed < budget:  # the rest at the cap, to the first firing past the budget
        left += math.ceil((budget - elapsed) / timeout) * timeout
    return round(left, 3)


def keepalive_seconds_left(
    timer_left: float, probes_out: int, probes: int, interval: float
) -> float:
    """Seconds from now until keepalive ends a connection whose peer does not answer: the
    keepalive timer fires in ``timer_left``; ``probes_out`` probes have gone unanswered so far,
    and the kernel gives up at the firing that finds ``probes`` (tcp_keepalive_probes) of
    them, one ``interval`` (tcp_keepalive_intvl) apart. Idle from the start, that is
    tcp_keepalive_time + probes x interval. Measured in network namespaces
    (tests/test_live_limits.py) against ETIMEDOUT.

    >>> keepalive_seconds_left(0.5, 1, 2, 1.0)  # probes at 2 and 3 s, the end at 4 s
    1.5
    """
    remaining = max(probes - max(probes_out, 0), 0)
    return round(timer_left + remaining * interval, 3)


def syn_queue_capacity(backlog: int, syncookies: int, max_syn_backlog: int | None) -> int:
    """How many half-open handshakes (SYN_RECV) one listener keeps before the next SYN gets a
    cookie (``syncookies`` 1) or is dropped (0); with ``syncookies`` 2 every SYN gets a cookie.

    The queue holds ``backlog`` + 1 (``backlog`` as the kernel capped it: ss's Send-Q).
    Without cookies the kernel also drops once fewer than a quarter of
    ``tcp_max_syn_backlog`` entries would be left. Measured in network namespaces
    (tests/test_live_limits.py): listen(8) keeps 9 with cookies on, 7 with them off and
    tcp_max_syn_backlog 8.

    >>> syn_queue_capacity(8, 1, 8)
    9
    >>> syn_queue_capacity(8, 0, 8)
    7
    """
    if syncookies >= 2:
        return 0
    capacity = max(backlog, 0) + 1
    if syncookies == 0 and max_syn_backlog is not None:
        capacity = min(capacity, max_syn_backlog - (max_syn_backlog >> 2) + 1)
    return max(capacity, 0)


def effective_orphan_retries(configured: int) -> int:
    """``tcp_orphan_retries`` 0 means 8 to the kernel (a safe number for a live peer)."""
    return 8 if configured == 0 else configured


def duration_text(seconds: float) -> str:
    """``63 s``; past two minutes the seconds with a rounder figure: ``924 s (about 15 min)``.

    Seconds are truncated, not rounded: the kernel's clocks are lower bounds.
    """
    whole = f"{int(seconds):,} s"
    if seconds < 120:
        return whole
    if seconds < 3 * 3600:
        return f"{whole} (about {seconds / 60:.0f} min)"
    return f"{whole} (about {seconds / 3600:.1f} h)"


def host_or_default(sysctls: Sysctls | None, name: str) -> tuple[int, bool]:
    """The host's value of the setting ``name``, else its Linux default; and whether the
    default was assumed (a finding that uses it says so)."""
    value = None if sysctls is None else getattr(sysctls, name)
    if value is None:
        return LINUX_DEFAULTS[name], True
    return int(value), False


def port_range_or_default(sysctls: Sysctls | None) -> tuple[tuple[int, int], bool]:
    """The host's ip_local_port_range, else the Linux default; and whether it was assumed."""
    found = None if sysctls is None else sysctls.ip_local_port_range
    return (DEFAULT_PORT_RANGE, True) if found is None else (found, False)


@dataclass
class _Settings:
    """Reads sysctls, falling back to Linux defaults and remembering which it assumed."""

    sysctls: Sysctls | None
    assumed: list[str] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> int:
        value, assumed = host_or_default(self.sysctls, name)
        if assumed:
            origin = _DEFAULT_NOTES.get(name, "Linux default")
            note = f"{name} = {value} ({origin}; not read from this host)"
            if note not in self.assumed:
                self.assumed.append(note)
        self._record(name, value)
        return int(value)

    def get_if_known(self, name: str) -> int | None:
        """The host's value, or ``None`` without assuming one: for a setting that older
        kernels lack, whose absence means the behaviour from before it."""
        value = None if self.sysctls is None else getattr(self.sysctls, name)
        if value is not None:
            self._record(name, value)
        return value

    def _record(self, name: str, value: int) -> None:
        pair = (name, str(value))
        if pair not in self.used:
            self.used.append(pair)


@dataclass(frozen=True)
class StateExplanation:
    """Everything ``tcphealth explain STATE`` says about one state."""

    state: TcpState
    spellings: tuple[str, ...]  # how ss, netstat, BSD/macOS and Windows print it
    meaning: str  # what the state is
    enters: str  # how a connection gets here
    leaves: str  # how it gets out
    stays: str  # what it says when connections stay here
    usual_blame: Blame  # who is usually at fault when they stay
    normal_duration: str  # how long it normally lasts on this host
    limit_seconds: float | None  # when the kernel ends it at the latest; None: no kernel timer
    action: str  # what to do about connections that stay
    settings: tuple[tuple[str, str], ...] = ()  # sysctl name and value used for the clock
    assumed: tuple[str, ...] = ()  # defaults used because the host's value was not known


@dataclass(frozen=True)
class _Entry:
    spellings: tuple[str, ...]
    meaning: str
    enters: str
    leaves: str
    stays: str
    usual_blame: Blame
    action: str
    clock: Callable[[_Settings], tuple[str, float | None]]


def _syn_sent_clock(settings: _Settings) -> tuple[str, float | None]:
    retries = settings.get("tcp_syn_retries")
    linear = settings.get_if_known("tcp_syn_linear_timeouts")
    schedule = syn_schedule(retries, linear)
    resent = f"{schedule.retransmissions} times"
    if schedule.spaced_evenly == schedule.retransmissions > 0:
        resent += f" (one second apart, as tcp_syn_linear_timeouts = {linear} asks)"
    elif schedule.spaced_evenly:
        # More SYNs than tcp_syn_retries: say where the others come from.
        resent += (
            f" (the first {schedule.spaced_evenly} one second apart, as "
            f"tcp_syn_linear_timeouts = {linear} asks, then at doubling intervals)"
        )
    else:
        resent += " (tcp_syn_retries)"
    return (
        f"Normally one round trip (milliseconds). Unanswered, the SYN is sent again {resent}, "
        f"the last after {duration_text(schedule.last_retry_seconds)}, and the attempt fails "
        f"after {duration_text(schedule.give_up_seconds)} unless the application gives up "
        "sooner.",
        schedule.give_up_seconds,
    )


def _syn_recv_clock(settings: _Settings) -> tuple[str, float | None]:
    retries = settings.get("tcp_synack_retries")
    limit = retransmission_budget(retries, _SYN_RTO)
    return (
        f"Normally one round trip. Without the client's ACK the SYN-ACK is sent again "
        f"{retries} times (tcp_synack_retries) and the half-open entry is dropped after "
        f"{duration_text(limit)}.",
        limit,
    )


def _established_clock(settings: _Settings) -> tuple[str, float | None]:
    retries2 = settings.get("tcp_retries2")
    stalled = retransmission_budget(retries2, _RTO_MIN)
    idle = settings.get("tcp_keepalive_time")
    interval = settings.get("tcp_keepalive_intvl")
    probes = settings.get("tcp_keepalive_probes")
    dead_idle = idle + interval * probes
    return (
        f"As long as both applications want: no timer ends a healthy connection. Unacknowledged "
        f"data is retransmitted for at least {duration_text(stalled)} (tcp_retries2 = "
        f"{retries2}) before the kernel drops the connection. An idle connection to a vanished "
        f"peer is noticed only with SO_KEEPALIVE, after {duration_text(dead_idle)} "
        f"({idle} s idle, then {probes} probes {interval} s apart); without it, never.",
        None,
    )


def _orphan_clock(settings: _Settings) -> tuple[str, float | None]:
    configured = settings.get("tcp_orphan_retries")
    retries = effective_orphan_retries(configured)
    limit = retransmission_budget(retries, _RTO_MIN)
    shown = f"{configured}, which the kernel reads as 8" if configured == 0 else str(configured)
    return (
        f"Normally one round trip. If the application has already closed (an orphan), the FIN "
        f"is retried tcp_orphan_retries times ({shown}): at least {duration_text(limit)}, more "
        f"on a slow path; above tcp_max_orphans the kernel resets orphans at once. If the "
        f"application still holds the socket, tcp_retries2 applies instead.",
        limit,
    )


def _fin_wait2_clock(settings: _Settings) -> tuple[str, float | None]:
    timeout = settings.get("tcp_fin_timeout")
    return (
        f"Until the peer closes. Only if the application has closed its socket (an orphan) "
        f"does the kernel give the peer tcp_fin_timeout = {timeout} s; a socket the application "
        f"still holds after shutdown() waits with no limit at all.",
        float(timeout),
    )


def _time_wait_clock(settings: _Settings) -> tuple[str, float | None]:
    reuse = settings.get("tcp_tw_reuse")
    reuse_text = {
        0: "never reused for new outgoing connections",
        1: "reusable for new outgoing connections when TCP timestamps allow it",
        2: "reusable for new outgoing connections on loopback only",
    }.get(reuse, f"tcp_tw_reuse = {reuse}")
    return (
        f"Exactly {TIME_WAIT_SECONDS:.0f} s (fixed in the kernel, no sysctl changes it; "
        f"tcp_fin_timeout does not). Meanwhile its local port is {reuse_text} "
        f"(tcp_tw_reuse = {reuse}).",
        TIME_WAIT_SECONDS,
    )


def _no_clock(text: str) -> Callable[[_Settings], tuple[str, float | None]]:
    def clock(settings: _Settings) -> tuple[str, float | None]:
        return text, None

    return clock


def _listen_clock(settings: _Settings) -> tuple[str, float | None]:
    somaxconn = settings.get("somaxconn")
    return (
        f"As long as the application runs: LISTEN has no timer. The accept queue holds at "
        f"most the backlog given to listen() plus one, and the backlog is cut to "
        f"net.core.somaxconn = {somaxconn}.",
        None,
    )


_TABLE: dict[TcpState, _Entry] = {
    TcpState.LISTEN: _Entry(
        spellings=("LISTEN", "LISTENING (Windows)"),
        meaning="A server socket waiting for clients; it never carries data itself.",
        enters="The application calls listen() on a bound socket.",
        leaves="The application closes it or exits.",
        stays=(
            "Staying is its purpose. What matters is its accept queue: connections the kernel "
            "has completed but the application has not yet taken with accept(). A queue at "
            "its backlog means the application is not accepting fast enough, and new clients "
            "are dropped."
        ),
        usual_blame=Blame.NONE,
        action=(
            "Compare Recv-Q (waiting to be accepted) with Send-Q (the backlog) in "
            "`ss -ltn`, and watch ListenOverflows in `nstat -az`. A full queue is fixed in "
            "the accept loop of the application, not with a bigger backlog."
        ),
        clock=_listen_clock,
    ),
    TcpState.SYN_SENT: _Entry(
        spellings=("SYN_SENT", "SYN-SENT (ss)"),
        meaning="This host asked a remote port for a connection and waits for its SYN-ACK.",
        enters="The application calls connect(); the kernel sends a SYN.",
        leaves=(
            "A SYN-ACK makes it ESTABLISHED; a reset (nothing listens there) or the end of "
            "the retries fails the connect() and the socket drops to CLOSE."
        ),
        stays=(
            "The other side never answers: the host is down or unreachable, or a firewall "
            "silently discards the SYN. If the destination is a listener on this very host, "
            "its accept queue may be full and dropping SYNs."
        ),
        usual_blame=Blame.REMOTE_PEER,
        action=(
            "Check the destination and the path: `ip route get ADDR`, a TCP traceroute to the "
            "port, the firewall rules on both sides. Give the client a connect timeout shorter "
            "than the kernel's."
        ),
        clock=_syn_sent_clock,
    ),
    TcpState.SYN_RECV: _Entry(
        spellings=("SYN_RECV", "SYN-RECV (ss)", "SYN_RCVD (BSD)", "SYN_RECEIVED (Windows)"),
        meaning=(
            "A client's SYN reached one of our listeners; we answered with a SYN-ACK and wait "
            "for the client's ACK that completes the handshake."
        ),
        enters="A SYN arrives for a port that a listener holds.",
        leaves=(
            "The client's ACK completes the handshake and the connection joins the listener's "
            "accept queue (ESTABLISHED); without it the entry expires."
        ),
        stays=(
            "The client's final ACK is not getting through: a SYN flood with forged sources, or "
            "a path that loses packets. But when the listener's accept queue is full, the "
            "kernel itself ignores that ACK, so a pile-up on a full listener is the application "
            "not accepting, not an attack."
        ),
        usual_blame=Blame.REMOTE_PEER,
        action=(
            "First look at the listener's queue (`ss -ltn`): if Recv-Q exceeds Send-Q the "
            "application is the problem. Otherwise look at who sends the SYNs (how many "
            "sources, `nstat -az TcpExtSyncookiesSent TcpExtTCPReqQFullDrop`) and keep "
            "tcp_syncookies on."
        ),
        clock=_syn_recv_clock,
    ),
    TcpState.ESTABLISHED: _Entry(
        spellings=("ESTABLISHED", "ESTAB (ss)"),
        meaning="The handshake is complete; both sides may send data.",
        enters="From SYN_SENT on a SYN-ACK, or from SYN_RECV on the client's ACK.",
        leaves=(
            "This side closes first (FIN_WAIT1) or the peer does (CLOSE_WAIT); a reset or the "
            "retransmission limit ends it abruptly."
        ),
        stays=(
            "Nothing, by itself. The queues tell the story: a receive queue that grows means "
            "the local application is not reading; a send queue with retransmissions means the "
            "peer or the path is gone; a zero-window probe timer means the peer is not reading."
        ),
        usual_blame=Blame.NONE,
        action=(
            "Look at Recv-Q, Send-Q and the timer in `ss -tnpo state established`; enable "
            "keepalive or an application-level timeout for connections that may sit idle."
        ),
        clock=_established_clock,
    ),
    TcpState.FIN_WAIT1: _Entry(
        spellings=("FIN_WAIT1", "FIN-WAIT-1 (ss)", "FIN_WAIT_1 (BSD, Windows)"),
        meaning="This side has closed and sent its FIN, which the peer has not yet acknowledged.",
        enters="The local application calls close() or shutdown() on an open connection.",
        leaves=(
            "The ACK of our FIN makes it FIN_WAIT2; a FIN from the peer at the same time makes "
            "it CLOSING; a FIN together with the ACK goes straight to TIME_WAIT."
        ),
        stays=(
            "Our FIN, and often data queued before it, is not acknowledged: the peer is gone, "
            "or stopped reading with a zero window, or the path drops packets."
        ),
        usual_blame=Blame.NETWORK,
        action=(
            "See where these go (`ss -tno state fin-wait-1`) and test the path to those peers. "
            "Counters: TCPAbortOnTimeout for those the kernel gave up on."
        ),
        clock=_orphan_clock,
    ),
    TcpState.FIN_WAIT2: _Entry(
        spellings=("FIN_WAIT2", "FIN-WAIT-2 (ss)", "FIN_WAIT_2 (BSD, Windows)"),
        meaning=(
            "Our FIN has been acknowledged; this side waits for the peer to close its side "
            "too. The peer may still send data."
        ),
        enters="From FIN_WAIT1 when the peer acknowledges our FIN.",
        leaves="The peer's FIN moves it to TIME_WAIT; for an orphan, tcp_fin_timeout ends it.",
        stays=(
            "The remote application has not closed its end: it is in CLOSE_WAIT over there, "
            "leaking or slow. If the local application still holds the socket (it used "
            "shutdown() to half-close), no timer ever ends the wait."
        ),
        usual_blame=Blame.REMOTE_PEER,
        action=(
            "Find the peer application that does not close (look for CLOSE_WAIT on the remote "
            "host). Locally, give a half-closing application a read timeout; tune "
            "tcp_fin_timeout only for orphans."
        ),
        clock=_fin_wait2_clock,
    ),
    TcpState.TIME_WAIT: _Entry(
        spellings=("TIME_WAIT", "TIME-WAIT (ss)"),
        meaning=(
            "The connection is over; the side that closed first keeps its four-tuple reserved "
            "for a while so that stray packets of the old connection cannot enter a new one."
        ),
        enters="The side that closed first receives the peer's FIN (from FIN_WAIT2 or CLOSING).",
        leaves="Its fixed timer expires.",
        stays=(
            "It always stays its full time: that is normal. Trouble starts with numbers: toward "
            "one destination they can use up the ephemeral ports (new connects fail with "
            "EADDRNOTAVAIL), and host-wide they can hit tcp_max_tw_buckets, beyond which the "
            "kernel skips TIME_WAIT."
        ),
        usual_blame=Blame.NONE,
        action=(
            "Find who closes first: TIME_WAIT is on that side. A client that opens a connection "
            "per request should keep connections open and reuse them; widening "
            "ip_local_port_range or raising tcp_max_tw_buckets only buys room."
        ),
        clock=_time_wait_clock,
    ),
    TcpState.CLOSE: _Entry(
        spellings=("CLOSE", "CLOSED (BSD, Windows)", "UNCONN (ss)"),
        meaning="No connection: a socket that is not (or no longer) connected to anything.",
        enters=(
            "A new socket starts here; a connection ends here after TIME_WAIT or LAST_ACK, a "
            "reset, or a failed connect()."
        ),
        leaves="connect() or listen() on the socket, or the application closes it.",
        stays=(
            "A descriptor still refers to a socket that has no connection: often a client whose "
            "connect() failed and which kept the socket, or one bound and never used."
        ),
        usual_blame=Blame.LOCAL_APPLICATION,
        action="Find the holder (`ss -tanp state closed`) and check that it closes failed sockets.",
        clock=_no_clock("No timer: as long as a descriptor holds the socket."),
    ),
    TcpState.CLOSE_WAIT: _Entry(
        spellings=("CLOSE_WAIT", "CLOSE-WAIT (ss)"),
        meaning=(
            "The peer has closed its side (its FIN arrived and was acknowledged); the kernel "
            "waits for the local application to close as well."
        ),
        enters="A FIN arrives on an ESTABLISHED connection.",
        leaves="The local application calls close() (the socket moves to LAST_ACK) or exits.",
        stays=(
            "The local application has not closed the socket after the peer did. Its receive "
            "queue tells how: 1 byte (the FIN alone) means it stopped reading; 0 means it read "
            "to the end and forgot close() -- a descriptor leak; more means unread data too. "
            "If no descriptor holds it, it was never accepted: the listener is not calling "
            "accept()."
        ),
        usual_blame=Blame.LOCAL_APPLICATION,
        action=(
            "Fix the application that holds them (`ss -tnp state close-wait` names it): close "
            "on end-of-file and on every error path. No sysctl shortens CLOSE_WAIT; restarting "
            "the process, or `ss -K` as root, only clears the symptom."
        ),
        clock=_no_clock(
            "No timer and no sysctl: until the application closes the socket or exits, "
            "however long that takes."
        ),
    ),
    TcpState.LAST_ACK: _Entry(
        spellings=("LAST_ACK", "LAST-ACK (ss)"),
        meaning=(
            "The peer closed first, then this side closed too and sent its FIN; it waits for "
            "the acknowledgement of that FIN."
        ),
        enters="The local application closes a connection that was in CLOSE_WAIT.",
        leaves="The ACK of our FIN ends the connection (CLOSE); no TIME_WAIT on this side.",
        stays=(
            "Our final FIN is not acknowledged: the peer went away right after closing, or the "
            "path drops packets."
        ),
        usual_blame=Blame.NETWORK,
        action="See where they go (`ss -tno state last-ack`) and test the path to those peers.",
        clock=_orphan_clock,
    ),
    TcpState.CLOSING: _Entry(
        spellings=("CLOSING",),
        meaning=(
            "Both sides closed at nearly the same moment: we sent our FIN and received theirs "
            "before they acknowledged ours."
        ),
        enters="From FIN_WAIT1 when the peer's FIN arrives before the ACK of our FIN.",
        leaves="The ACK of our FIN moves it to TIME_WAIT.",
        stays=(
            "As in FIN_WAIT1, the acknowledgement of our FIN does not arrive: the peer is gone "
            "or the path drops packets."
        ),
        usual_blame=Blame.NETWORK,
        action="See where they go (`ss -tno state closing`) and test the path to those peers.",
        clock=_orphan_clock,
    ),
    TcpState.BOUND_INACTIVE: _Entry(
        spellings=("BOUND_INACTIVE", "BOUND (Windows)"),
        meaning=(
            "Not one of the eleven TCP states: a socket bound to an address and port that "
            "neither listens nor connects (newer kernels report it separately)."
        ),
        enters="The application calls bind() and nothing else yet.",
        leaves="listen(), connect() or close().",
        stays=(
            "The port is reserved by a socket that does nothing with it; many of them use up ports."
        ),
        usual_blame=Blame.LOCAL_APPLICATION,
        action="Find the holder and check why it binds without using the socket.",
        clock=_no_clock("No timer: as long as a descriptor holds the socket."),
    ),
}


class UnknownStateError(ValueError):
    """The text names no TCP state we know."""


def explain(state: TcpState, sysctls: Sysctls | None = None) -> StateExplanation:
    """What ``state`` means and how long it lasts with ``sysctls`` (Linux defaults if None).

    Raises :class:`UnknownStateError` for :attr:`TcpState.UNKNOWN`.
    """
    entry = _TABLE.get(state)
    if entry is None:
        raise UnknownStateError(f"no explanation for {state.value}")
    settings = _Settings(sysctls)
    duration, limit = entry.clock(settings)
    return StateExplanation(
        state=state,
        spellings=entry.spellings,
        meaning=entry.meaning,
        enters=entry.enters,
        leaves=entry.leaves,
        stays=entry.stays,
        usual_blame=entry.usual_blame,
        normal_duration=duration,
        limit_seconds=limit,
        action=entry.action,
        settings=tuple(settings.used),
        assumed=tuple(settings.assumed),
    )


def explain_name(name: str, sysctls: Sysctls | None = None) -> StateExplanation:
    """:func:`explain` for a state written in any tool's spelling (``CLOSE-WAIT``, ``ESTAB``,
    ``SYN_RCVD``, ``LISTENING``); raises :class:`UnknownStateError` naming the text otherwise."""
    state = parse_state(name)
    if state is None or state is TcpState.UNKNOWN:
        raise UnknownStateError(f"not a TCP state: {name!r}")
    return explain(state, sysctls)


def format_explanation(explanation: StateExplanation, width: int = 88) -> str:
    """Plain text for a terminal or a pipe: a title line, then one labelled paragraph each."""
    title = explanation.state.value
    others = [s for s in explanation.spellings if s != title]
    if others:
        title += f" (also written {', '.join(others)})"
    sections: list[tuple[str, str]] = [
        ("What it is", explanation.meaning),
        ("Gets here", explanation.enters),
        ("Leaves", explanation.leaves),
        ("If it stays", explanation.stays),
        ("Usually to blame", explanation.usual_blame.value),
        ("How long here", explanation.normal_duration),
        ("What to do", explanation.action),
    ]
    if explanation.assumed:
        sections.append(("Assumed", "; ".join(explanation.assumed) + "."))
    lines = [title]
    for label, text in sections:
        filled = textwrap.fill(
            _glue_commands(text),
            width=width,
            initial_indent=f"  {label}: ",
            subsequent_indent="    ",
            break_on_hyphens=False,
            break_long_words=False,
        )
        lines.append(filled.replace(_GLUE, " "))
    return "\n".join(lines) + "\n"


_GLUE = "\x00"


def _glue_commands(text: str) -> str:
    """Join the words of each `command` so that wrapping never splits a command in two."""
    parts = text.split("`")
    # Odd-numbered parts are inside backticks.
    return "`".join(part.replace(" ", _GLUE) if i % 2 else part for i, part in enumerate(parts))
