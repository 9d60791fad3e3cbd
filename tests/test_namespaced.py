"""The diagnosis of several network namespaces, one at a time, over built snapshots: each
namespace with its own sysctls and counters, sockets never merged across namespaces, findings
placed (named, "In pod X:", next steps that run there)."""

from __future__ import annotations

from dataclasses import replace

from tcphealth.filters import SocketFilter, apply_filter, select_namespace
from tcphealth.model import (
    Container,
    NetNamespace,
    NetnsKind,
    OwnerSource,
    Snapshot,
    Sysctls,
    TcpState,
)
from tcphealth.namespaced import way_in
from tcphealth.pipeline import analyse, analyse_series
from tcphealth.render import RenderOptions, render
from tcphealth.report import Report
from tcphealth.sources.owners import credit_unaccepted_to_listeners
from tests.builders import listener, many, process, snapshot, sock
from tests.scenario_helpers import output, string_env

HOST, POD, LAB = 4026531833, 4026532300, 4026532400
WEB = Container(runtime="containerd", id="ab" * 32, name="app", pod_uid="u-1", pod="shop/web")

NAMESPACES = (
    NetNamespace(HOST, "host", NetnsKind.HOST, counters={"TcpExt.ListenOverflows": 0}),
    NetNamespace(
        POD,
        "pod:shop/web",
        NetnsKind.POD,
        enter="/proc/700/ns/net",
        pid=700,
        process_count=1,
        container=replace(WEB, id=None, name=None),
        sysctls=Sysctls(somaxconn=64),
        counters={"TcpExt.ListenOverflows": 41},
    ),
    NetNamespace(
        LAB, "lab", NetnsKind.NAMED, enter="/run/netns/lab", ip_name="lab", names=("lab",)
    ),
)


def host_with_a_pod() -> Snapshot:
    leak = many(
        12,
        lambda i: sock(
            "CLOSE-WAIT", "10.1.0.5:8080", f"10.1.0.9:{41000 + i}", pids=(700,), recv_queue=0,
            inode=9000 + i, netns=POD,
        ),
    )  # fmt: skip
    same_in_two = [
        sock("TIME-WAIT", "127.0.0.1:5000", "127.0.0.1:40000", inode=0, netns=netns)
        for netns in (HOST, LAB)
    ]
    return replace(
        snapshot(
            listener("0.0.0.0:8080", queued=0, backlog=64, pids=(700,), inode=8999, netns=POD),
            *leak,
            *same_in_two,
            processes=[
                process(700, "web", netns=POD, container=WEB),
                process(1, "init", netns=HOST),
            ],
        ),
        namespaces=NAMESPACES,
    )


def test_a_finding_in_a_pod_names_it_and_its_steps_run_there() -> None:
    report = analyse(host_with_a_pod())
    (leak,) = [f for f in report.findings if f.code.startswith("close-wait")]
    assert (leak.netns, leak.container, leak.pod) == ("pod:shop/web", "app", "shop/web")
    assert leak.summary.startswith("In pod shop/web: ")
    in_namespace = [s for s in leak.next_steps if s.startswith("nsenter --net=/proc/700/ns/net ")]
    assert in_namespace and all(" ss " in f" {s} " for s in in_namespace)
    # /proc/PID paths mean the same from everywhere: left as they were.
    assert any(s.startswith("cat /proc/700/limits") for s in leak.next_steps)
    assert any(s.startswith("nsenter -t $(crictl inspect") for s in leak.next_steps)


def test_sockets_are_never_merged_across_namespaces() -> None:
    report = analyse(host_with_a_pod())
    time_wait = [g for g in report.unowned.groups if g.state.value == "TIME_WAIT"]
    assert sorted(g.netns for g in time_wait if g.netns) == [HOST, LAB]
    assert report.states[time_wait[0].state] == 2
    lines = _plain(report).splitlines()
    assert sum(line.startswith("TIME_WAIT count=1 ") for line in lines) == 2
    assert any(
        line.endswith(" netns=lab container=- pod=- unaccepted=0")
        for line in lines
        if "TIME_WAIT" in line
    )


def test_each_namespace_is_diagnosed_with_its_own_counters() -> None:
    full = host_with_a_pod()
    full_listener = listener(
        "0.0.0.0:8080", queued=65, backlog=64, pids=(700,), inode=8999, netns=POD
    )
    queued = replace(full, sockets=(full_listener, *full.sockets[1:]))
    report = analyse(queued)
    (overflow,) = [f for f in report.findings if f.code == "listen-queue-full"]
    evidence = {item.name: item.value for item in overflow.evidence}
    assert evidence["ListenOverflows"] == 41  # the pod's counter, not the host's 0
    assert evidence["somaxconn"] == 64


def test_a_listener_credits_unaccepted_sockets_of_its_own_namespace_only() -> None:
    unaccepted = [
        sock("SYN-RECV", "127.0.0.1:8080", "127.0.0.1:40001", inode=0, owner=OwnerSource.NONE,
             netns=netns)
        for netns in (POD, LAB)
    ]  # fmt: skip
    lone = listener("127.0.0.1:8080", pids=(700,), inode=1, netns=POD)
    credited = credit_unaccepted_to_listeners([lone, *unaccepted])
    assert [s.pids for s in credited[1:]] == [(700,), ()]


def test_way_in_and_filters() -> None:
    assert way_in(NAMESPACES[0]) is None
    assert way_in(NAMESPACES[1]) == "nsenter --net=/proc/700/ns/net"
    assert way_in(NAMESPACES[2]) == "ip netns exec lab"
    whole = host_with_a_pod()
    pod_only = apply_filter(whole, SocketFilter(pods=("shop/*",)))
    assert {s.netns for s in pod_only.sockets} == {POD}
    assert [ns.label for ns in pod_only.namespaces] == ["pod:shop/web"]
    assert apply_filter(whole, SocketFilter(containers=("nope",))).sockets == ()
    lab = select_namespace(whole, "lab")
    assert lab is not None and [s.netns for s in lab.sockets] == [LAB]
    assert select_namespace(whole, str(POD)) is not None
    assert select_namespace(whole, "nowhere") is None


def _plain(report: Report) -> str:
    env = string_env()
    render(report, "plain", RenderOptions(), env)
    return output(env)


def test_a_series_of_namespaces_is_diagnosed_per_namespace() -> None:
    first = host_with_a_pod()
    later = replace(first, host=replace(first.host, taken_at=first.host.taken_at + 10))
    report = analyse_series([first, later])
    assert report.series is not None and report.series.samples == 2
    assert [ns.label for ns in report.namespaces] == ["host", "pod:shop/web", "lab"]
    (leak,) = [f for f in report.findings if f.code.startswith("close-wait")]
    assert (leak.netns, leak.pod) == ("pod:shop/web", "shop/web")
    assert leak.summary.startswith("In pod shop/web: ")
    assert report.socket_count == len(later.sockets)


def test_a_counter_read_in_a_pod_is_said_to_be_the_pod_s() -> None:
    full = host_with_a_pod()
    full_listener = listener(
        "0.0.0.0:8080", queued=65, backlog=64, pids=(700,), inode=8999, netns=POD
    )
    report = analyse(replace(full, sockets=(full_listener, *full.sockets[1:])))
    (overflow,) = [f for f in report.findings if f.code == "listen-queue-full"]
    (counter,) = [item for item in overflow.evidence if item.name == "ListenOverflows"]
    assert counter.detail is not None and "in pod shop/web since boot" in counter.detail
    assert "host-wide" not in counter.detail
    (through,) = [s for s in overflow.next_steps if s.startswith("nsenter -t ")]
    assert through.count("#") == 1  # the step's own comment is not carried into it


def test_a_filter_lists_no_process_whose_findings_it_hides() -> None:
    """--pid 1 on a host whose pod process 700 leaks CLOSE_WAIT: the leak is not shown, and
    pid 700 must not be listed either -- listed without its finding, it read as a process
    with "nothing wrong" holding 0 sockets (found live: `tcphealth --pid 1` listed every
    process with a finding elsewhere that way)."""
    whole = host_with_a_pod()
    flt = SocketFilter(pids=frozenset({1}))
    for report in (analyse(whole, flt), analyse_series([whole, _later(whole)], flt)):
        assert [f.code for f in report.findings] == []
        assert [summary.pid for summary in report.processes] == [1]
    # The pod's process is still listed, with its finding, when the filter selects it.
    selected = analyse(whole, SocketFilter(pids=frozenset({700})))
    (web,) = [summary for summary in selected.processes if summary.pid == 700]
    assert [f.code for f in web.findings] == [f.code for f in selected.findings]
    assert web.findings and web.findings[0].code.startswith("close-wait")


def _later(first: Snapshot) -> Snapshot:
    return replace(first, host=replace(first.host, taken_at=first.host.taken_at + 10))


def test_a_filtered_series_counts_the_selection_in_each_sample() -> None:
    """The pod's CLOSE_WAIT grow from 12 to 20 between samples; filtered to the host's init,
    the states over the samples are init's (none), not the host's, as the header "filtered"
    says. Unfiltered, they are the host's."""
    first = replace(host_with_a_pod(), host=replace(host_with_a_pod().host, taken_at=100.0))
    grown = many(
        8,
        lambda i: sock(
            "CLOSE-WAIT", "10.1.0.5:8080", f"10.1.0.8:{42000 + i}", pids=(700,), recv_queue=0,
            inode=9500 + i, netns=POD,
        ),
    )  # fmt: skip
    second = replace(
        first,
        sockets=(*first.sockets, *grown),
        host=replace(first.host, taken_at=110.0),
    )
    whole = analyse_series([first, second])
    assert whole.series is not None
    assert [counts.get(TcpState.CLOSE_WAIT, 0) for _, counts in whole.series.state_history] == [
        12,
        20,
    ]
    web = analyse_series([first, second], SocketFilter(pids=frozenset({700})))
    assert web.series is not None
    assert [counts.get(TcpState.CLOSE_WAIT, 0) for _, counts in web.series.state_history] == [
        12,
        20,
    ]
    time_wait = analyse_series(
        [first, second], SocketFilter(states=frozenset({TcpState.TIME_WAIT}))
    )
    assert time_wait.series is not None
    assert [dict(counts) for _, counts in time_wait.series.state_history] == [
        {TcpState.TIME_WAIT: 2},
        {TcpState.TIME_WAIT: 2},
    ]
