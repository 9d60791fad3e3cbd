"""The table of states: every state explained, clocks computed from the host's sysctls."""

from __future__ import annotations

import dataclasses

import pytest

from tcphealth.model import TCP_STATES, Blame, Sysctls, TcpState
from tcphealth.states import (
    UnknownStateError,
    explain,
    explain_name,
    format_explanation,
    retransmission_budget,
    syn_schedule,
)

TEXT_FIELDS = ("meaning", "enters", "leaves", "stays", "normal_duration", "action")


@pytest.mark.parametrize("state", TCP_STATES, ids=lambda s: s.value)
def test_every_state_has_every_field_filled(state: TcpState) -> None:
    explanation = explain(state, None)
    assert explanation.state is state
    for name in TEXT_FIELDS:
        value = getattr(explanation, name)
        assert isinstance(value, str) and len(value) > 20, name
    assert explanation.spellings and explanation.spellings[0] == state.value
    assert isinstance(explanation.usual_blame, Blame)


def test_the_table_covers_exactly_the_eleven_states_plus_bound_inactive() -> None:
    explained = {s for s in TcpState if s is not TcpState.UNKNOWN}
    for state in explained:
        explain(state)
    assert len(TCP_STATES) == 11
    with pytest.raises(UnknownStateError):
        explain(TcpState.UNKNOWN)


def test_explanation_is_frozen() -> None:
    explanation = explain(TcpState.CLOSE_WAIT)
    with pytest.raises(dataclasses.FrozenInstanceError):
        explanation.meaning = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spelling", "state"),
    [
        ("CLOSE-WAIT", TcpState.CLOSE_WAIT),  # ss
        ("close_wait", TcpState.CLOSE_WAIT),
        ("ESTAB", TcpState.ESTABLISHED),  # ss
        ("SYN-RECV", TcpState.SYN_RECV),  # ss
        ("SYN_RCVD", TcpState.SYN_RECV),  # BSD / macOS
        ("SYN_RECEIVED", TcpState.SYN_RECV),  # Windows
        ("FIN_WAIT_2", TcpState.FIN_WAIT2),  # BSD / Windows
        ("fin-wait-1", TcpState.FIN_WAIT1),  # ss
        ("LISTENING", TcpState.LISTEN),  # Windows
        ("CLOSED", TcpState.CLOSE),  # BSD / Windows
        ("UNCONN", TcpState.CLOSE),  # ss
        (" time-wait ", TcpState.TIME_WAIT),
    ],
)
def test_explain_name_accepts_other_tools_spellings(spelling: str, state: TcpState) -> None:
    assert explain_name(spelling).state is state


@pytest.mark.parametrize("text", ["", "HALF_OPEN", "UNKNOWN", "ESTABLISHED!"])
def test_explain_name_rejects_non_states_naming_the_text(text: str) -> None:
    with pytest.raises(UnknownStateError, match="not a TCP state"):
        explain_name(text)


def test_retransmission_budgets_match_the_kernel_figures() -> None:
    # KERNEL.md: 6 SYN retries -> last retry ~63 s, give up ~127 s; tcp_retries2=15 -> ~924 s.
    assert syn_schedule(6).last_retry_seconds == 63.0
    assert retransmission_budget(6, 1.0) == 127.0
    assert retransmission_budget(5, 1.0) == 63.0  # tcp_synack_retries default
    assert retransmission_budget(15, 0.2) == pytest.approx(924.6)
    assert retransmission_budget(8, 0.2) == pytest.approx(102.2)  # orphan retries 0 -> 8
    # Past 120 s per timeout the growth is linear: 7 SYN retries = 127 + 120.
    assert retransmission_budget(7, 1.0) == 247.0


# (tcp_syn_retries, tcp_syn_linear_timeouts) -> seconds until connect() failed with ETIMEDOUT,
# measured in a fresh network namespace on kernel 6.18 against a listener whose full accept
# queue drops the SYNs (tests/test_live_syn_schedule.py repeats the quick ones).
MEASURED_GIVE_UP = {(1, 0): 3.0, (1, 1): 4.1, (2, 1): 8.1, (3, 2): 17.5, (2, 4): 7.1, (3, 4): 19.4}


@pytest.mark.parametrize("settings", sorted(MEASURED_GIVE_UP), ids=str)
def test_syn_schedule_gives_up_when_the_kernel_did(settings: tuple[int, int]) -> None:
    retries, linear = settings
    # The kernel's timers fire a little late (a few hundred ms at most), never early.
    assert 0 <= MEASURED_GIVE_UP[settings] - syn_schedule(retries, linear).give_up_seconds < 0.6


def test_syn_schedule_with_linear_timeouts_resends_more_in_about_the_same_time() -> None:
    # The default pair on kernels with linear timeouts: SYNs at 1..5 s, then 7, 11, 19, 35, 67.
    assert syn_schedule(6, 4) == syn_schedule(6, 4).__class__(
        retransmissions=10, last_retry_seconds=67.0, give_up_seconds=131.0, spaced_evenly=5
    )
    # Without them (or 0 of them) it is the doubling schedule of old: 1, 3, 7, 15, 31, 63.
    for linear in (None, 0, -3):
        assert (
            syn_schedule(6, linear).retransmissions,
            syn_schedule(6, linear).give_up_seconds,
        ) == (
            6,
            127.0,
        )
    # Fewer retries than linear timeouts: every retry is a second after the one before.
    assert syn_schedule(1, 4) == syn_schedule(1, 4).__class__(2, 2.0, 3.0, 2)
    # Past the 120 s cap each retry adds 120 s; the loop still ends.
    assert syn_schedule(15, 4).give_up_seconds >= retransmission_budget(15, 1.0)


def timer_by_timer(retries: int, linear: int) -> tuple[int, float, float, int]:
    """The kernel's rule stated plainly, one retransmission timer at a time: give up at the
    first timer at or past the doubling schedule's budget; else resend, and keep the 1 s
    timeout while no more than ``linear`` SYNs have been resent, then double it (to 120 s)."""
    budget = retransmission_budget(retries, 1.0)
    elapsed, last, timeout, sent = 0.0, 0.0, 1.0, 0
    while True:
        elapsed += timeout
        if elapsed >= budget:
            return sent, last, elapsed, min(sent, linear + 1) if linear else 0
        sent, last = sent + 1, elapsed
        if sent > linear:
            timeout = min(timeout * 2, 120.0)


def test_syn_schedule_agrees_with_the_timer_by_timer_rule() -> None:
    # 127 is the largest value the kernel accepts for either setting (sysctl -w 128: EINVAL);
    # the larger pairs stand for snapshot files that say more.
    pairs = [(r, n) for r in range(41) for n in range(41)]
    for retries, linear in [*pairs, (127, 127), (300, 5), (5, 300), (255, 255)]:
        schedule = syn_schedule(retries, linear)
        assert (
            schedule.retransmissions,
            schedule.last_retry_seconds,
            schedule.give_up_seconds,
            schedule.spaced_evenly,
        ) == timer_by_timer(retries, linear), (retries, linear)


def test_syn_schedule_of_an_absurd_snapshot_is_computed_not_looped() -> None:
    # A snapshot file may hold any number; the schedule is arithmetic past the first turns.
    budget = retransmission_budget(10**9, 1.0)
    for linear in (None, 10**9):
        schedule = syn_schedule(10**9, linear)
        # The attempt ends at the first timer at or past the budget: at most one 120 s later.
        assert budget <= schedule.give_up_seconds < budget + 120
        assert schedule.last_retry_seconds < schedule.give_up_seconds


def test_syn_sent_clock_counts_the_linear_timeouts_it_was_told_of() -> None:
    explanation = explain(TcpState.SYN_SENT, Sysctls(tcp_syn_retries=6, tcp_syn_linear_timeouts=4))
    assert explanation.limit_seconds == 131.0
    assert explanation.settings == (("tcp_syn_retries", "6"), ("tcp_syn_linear_timeouts", "4"))
    assert explanation.assumed == ()
    assert (
        "sent again 10 times (the first 5 one second apart, as tcp_syn_linear_timeouts = 4 asks, "
        "then at doubling intervals), the last after 67 s, and the attempt fails after 131 s"
    ) in explanation.normal_duration


def test_syn_sent_clock_follows_the_hosts_syn_retries() -> None:
    explanation = explain(TcpState.SYN_SENT, Sysctls(tcp_syn_retries=3))
    assert explanation.limit_seconds == 15.0
    assert "3 times" in explanation.normal_duration
    assert explanation.settings == (("tcp_syn_retries", "3"),)
    assert explanation.assumed == ()


def test_defaults_are_named_when_sysctls_are_unknown() -> None:
    explanation = explain(TcpState.SYN_SENT, None)
    assert explanation.limit_seconds == 127.0
    assert explanation.assumed == ("tcp_syn_retries = 6 (Linux default; not read from this host)",)
    # A snapshot that lacks just this one value assumes just this one.
    partial = explain(TcpState.FIN_WAIT2, Sysctls(tcp_syn_retries=2))
    assert partial.assumed == ("tcp_fin_timeout = 60 (Linux default; not read from this host)",)


def test_fin_wait2_timeout_is_for_orphans_only() -> None:
    explanation = explain(TcpState.FIN_WAIT2, Sysctls(tcp_fin_timeout=30))
    assert explanation.limit_seconds == 30.0
    assert "30 s" in explanation.normal_duration
    assert "no limit" in explanation.normal_duration
    assert explanation.assumed == ()


def test_time_wait_is_fixed_at_60_seconds_whatever_fin_timeout_says() -> None:
    explanation = explain(TcpState.TIME_WAIT, Sysctls(tcp_fin_timeout=5, tcp_tw_reuse=1))
    assert explanation.limit_seconds == 60.0
    assert "60 s" in explanation.normal_duration
    assert "tcp_tw_reuse = 1" in explanation.normal_duration


@pytest.mark.parametrize("state", [TcpState.CLOSE_WAIT, TcpState.LISTEN, TcpState.ESTABLISHED])
def test_states_without_a_kernel_timer_have_no_limit(state: TcpState) -> None:
    assert explain(state, Sysctls()).limit_seconds is None


def test_close_wait_has_no_timer_and_reads_the_receive_queue() -> None:
    explanation = explain(TcpState.CLOSE_WAIT)
    assert "No timer" in explanation.normal_duration
    assert "1 byte" in explanation.stays and "0 means" in explanation.stays
    assert explanation.usual_blame is Blame.LOCAL_APPLICATION


def test_orphan_retries_zero_is_read_as_eight() -> None:
    explanation = explain(TcpState.LAST_ACK, Sysctls(tcp_orphan_retries=0))
    assert explanation.limit_seconds == pytest.approx(102.2)
    assert "reads as 8" in explanation.normal_duration


def test_established_names_retries2_and_keepalive() -> None:
    sysctls = Sysctls(
        tcp_retries2=8, tcp_keepalive_time=600, tcp_keepalive_intvl=10, tcp_keepalive_probes=3
    )
    text = explain(TcpState.ESTABLISHED, sysctls).normal_duration
    assert "102 s" in text  # 8 retries at RTO 200 ms
    assert "630 s" in text  # 600 + 3 * 10
    assert "SO_KEEPALIVE" in text


def test_format_explanation_is_plain_labelled_text() -> None:
    text = format_explanation(explain_name("close-wait", None))
    lines = text.splitlines()
    assert lines[0] == "CLOSE_WAIT (also written CLOSE-WAIT (ss))"
    for label in ("What it is:", "Gets here:", "Leaves:", "If it stays:", "How long here:"):
        assert any(line.startswith(f"  {label}") for line in lines), label
    assert all(len(line) <= 88 for line in lines)
    assert "\x1b" not in text  # no colour codes: it may go to a pipe


def test_format_explanation_lists_assumed_defaults_and_keeps_commands_whole() -> None:
    text = format_explanation(explain(TcpState.LISTEN, None), width=60)
    assert "Assumed: somaxconn = 4096" in text
    assert "`ss -ltn`" in text  # never broken across lines
    assert "\x00" not in text


def test_format_explanation_has_no_assumed_line_when_all_values_known() -> None:
    text = format_explanation(explain(TcpState.SYN_RECV, Sysctls(tcp_synack_retries=2)))
    assert "Assumed" not in text
    assert "7 s" in text  # 1 + 2 + 4
