"""``ss -tan`` as the oracle the benchmark counts against: run it, parse it, count per state.

``ss -tanH`` prints one socket per line, ``State Recv-Q Send-Q Local:Port Peer:Port``::

    ESTAB      0  0  127.0.0.2:40312   127.0.0.1:20001
    LISTEN     0  4096  [::ffff:127.0.0.1]:80  [::]:*

The address is everything before the last ``:``; IPv6 addresses come in brackets.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tcphealth.model import TcpState, parse_state

# The states the load generator holds and that never change while it runs: counts of these
# must agree exactly. TIME_WAIT expires after 60 s and is refreshed, so it churns.
STABLE_STATES: tuple[TcpState, ...] = (
    TcpState.LISTEN,
    TcpState.ESTABLISHED,
    TcpState.CLOSE_WAIT,
    TcpState.FIN_WAIT2,
)
LOADGEN_STATES: tuple[TcpState, ...] = (*STABLE_STATES, TcpState.TIME_WAIT)


@dataclass(frozen=True)
class Row:
    state: TcpState
    local_address: str
    local_port: int | None
    remote_address: str
    remote_port: int | None


def _split_endpoint(text: str) -> tuple[str, int | None]:
    address, _, port = text.rpartition(":")
    address = address.strip("[]")
    # ss appends "%lo" to a link-local or interface-bound address; the interface is not ours.
    address = address.partition("%")[0]
    return address, int(port) if port.isdigit() else None


def parse_ss(text: str) -> list[Row]:
    """Parse the output of ``ss -tanH`` (``-H``: no header). Unknown state words raise."""
    rows: list[Row] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        state = parse_state(fields[0])
        if state is None:
            raise ValueError(f"ss printed an unknown state in {line!r}")
        local_address, local_port = _split_endpoint(fields[3])
        remote_address, remote_port = _split_endpoint(fields[4])
        rows.append(Row(state, local_address, local_port, remote_address, remote_port))
    return rows


def run_ss(timeout: float = 120.0) -> list[Row]:
    """Every TCP socket of this network namespace, as ``ss -tanH`` sees it now."""
    result = subprocess.run(
        ["ss", "-tanH"], capture_output=True, text=True, check=True, timeout=timeout
    )
    return parse_ss(result.stdout)


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address.startswith("::ffff:127.")


def owned_by(ports: frozenset[int], local_port: int | None, remote_port: int | None) -> bool:
    """A load-generator socket: one end is one of its listener ports. Those ports lie below
    the ephemeral range, so no other program's client socket can carry one by chance."""
    return local_port in ports or remote_port in ports


def count_states(rows: Iterable[Row], ports: frozenset[int] | None = None) -> Counter[TcpState]:
    """Sockets per state; only the load generator's (loopback, one end on ``ports``) if given."""
    counts: Counter[TcpState] = Counter()
    for row in rows:
        if ports is not None and not (
            is_loopback(row.local_address) and owned_by(ports, row.local_port, row.remote_port)
        ):
            continue
        counts[row.state] += 1
    return counts
