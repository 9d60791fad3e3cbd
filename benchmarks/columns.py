"""What the columnar path costs against the object path, without a live dump: a large reply
made of the recorded reply's messages (benchmarks.netlink_decode; its listeners once), owners
made up (every socket with a descriptor held by one of two processes), best of several rounds.

    python -m benchmarks.columns --sockets 100000

Parts timed, each both ways:
- decoding: ``Decoder.drafts`` (one object per socket) against ``columns.decode``;
- owners: ``netlink._finish_all`` against ``lean.table_of`` (group numbers per row);
- the exposition's socket counts: ``families`` of a report against ``table_families``
  (both with no findings);
- each rule with a table check: ``check`` on the index against ``check_table`` on the lean
  path's index (built each time: ``SnapshotIndex.build_table`` of the non-bulk sockets).
"""

from __future__ import annotations

import argparse
import functools
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import cast

from benchmarks.netlink_decode import RECORDED, generated, split
from tcphealth.columnar import STATE_OF_CODE, DumpColumns
from tcphealth.diagnose import RULES
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import TableCheck
from tcphealth.model import Attribution, HostInfo, Snapshot, Socket, SocketDraft, Sysctls
from tcphealth.render.prometheus import KernelFacts, families, table_families
from tcphealth.report import build_report
from tcphealth.sources import background_scan, columns, lean, netlink, procfs

CHUNK = 1 << 20  # about what one recv() of the dump gives
_STATE_AT, _LISTEN = 16 + 1, 10  # nlmsghdr, then idiag_family, idiag_state


def chunked(reply: bytes) -> list[memoryview]:
    """The reply cut at message boundaries into datagrams of at most CHUNK bytes."""
    view = memoryview(reply)
    chunks, start, offset = [], 0, 0
    while offset < len(reply):
        length = struct.unpack_from("=I", reply, offset)[0]
        padded = (length + 3) & ~3
        if offset + padded - start > CHUNK:
            chunks.append(view[start:offset])
            start = offset
        offset += padded
    chunks.append(view[start:])
    return chunks


def best(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times)


def made_up_owners(inodes: array[int]) -> background_scan.Owners:
    groups: list[tuple[int, ...]] = [(), (1000,), (1001,)]
    index = array("I", [0 if not inode else 1 + inode % 2 for inode in inodes])
    return background_scan.Owners(procfs.FdScan(), groups, index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    messages, done = split(RECORDED.read_bytes())
    # The listeners once (a host has a few), the other messages repeated.
    listening = [m for m in messages if m[_STATE_AT] == _LISTEN]
    others = [m for m in messages if m[_STATE_AT] != _LISTEN]
    reply = b"".join(listening) + generated(others, done, args.sockets - len(listening))
    chunks = chunked(reply)

    def objects() -> list[SocketDraft]:
        decoder, drafts = netlink.Decoder(), []
        for chunk in chunks:
            found, _ = decoder.drafts(chunk, "benchmark")
            drafts.extend(found)
        return drafts

    def table_columns() -> DumpColumns:
        decoded = columns.decode(chunks, "benchmark")
        assert decoded is not None
        return decoded[0]

    drafts = objects()
    inodes = array("Q", [d.inode or 0 for d in drafts])
    owners = made_up_owners(inodes)
    decoded = table_columns()
    proc = Path("/nonexistent")  # no process is read again

    def finish() -> None:
        netlink._finish_all(objects_again, owners)

    objects_again = objects()
    finish_s = best(finish, 1)  # a draft is finished once: one round, on fresh drafts
    table, _ = lean.table_of(decoded, owners, proc)
    sockets = cast(list[Socket], drafts)
    netlink._finish_all(drafts, owners)
    sysctls = Sysctls(ip_local_port_range=(32768, 60999))
    snapshot = Snapshot(
        host=HostInfo(
            hostname="bench", kernel=None, taken_at=0.0, source="netlink", privileged=None
        ),
        attribution=Attribution(attempted=True),
        sysctls=sysctls,
        sockets=tuple(sockets),
    )
    report = build_report(snapshot, [], grouped=False)
    kernel = KernelFacts({}, sysctls)
    index = SnapshotIndex.build(snapshot)
    # The lean path's index: the bulk states' rows only in the table (each rule's table check
    # reads the columns only over such an index).
    bulk = {STATE_OF_CODE[code] for code in lean.BULK_CODES}
    lean_snapshot = replace(snapshot, sockets=tuple(s for s in sockets if s.state not in bulk))
    thresholds = Thresholds()
    rule_rows = []
    for rule in RULES:
        if rule.check is None or rule.check_table is None:
            continue
        objects_check = functools.partial(rule.check, index, thresholds)

        def columns_check(check: TableCheck = rule.check_table) -> None:
            # A fresh index each time: a lazy state made objects once stays made.
            lean_index = SnapshotIndex.build_table(lean_snapshot, table, lean.BULK_CODES)
            check(lean_index, thresholds, table)

        rule_rows.append(
            (
                f"rule {rule.name}",
                best(objects_check, args.rounds),
                best(columns_check, args.rounds),
            )
        )
    rows = [
        ("decoding", best(objects, args.rounds), best(table_columns, args.rounds)),
        ("owners", finish_s, best(lambda: lean.table_of(decoded, owners, proc), args.rounds)),
        (
            "metric families (socket counts)",
            best(lambda: families(report, kernel), args.rounds),
            best(lambda: table_families(report, table, kernel), args.rounds),
        ),
    ]
    print(f"{args.sockets} sockets, CPU seconds (best of {args.rounds}): objects / columns")
    for name, by_objects, by_columns in rows + rule_rows:
        print(f"  {name:32} {by_objects:8.4f} {by_columns:8.4f}")


if __name__ == "__main__":
    main()
