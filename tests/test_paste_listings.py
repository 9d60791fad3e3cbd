"""A paste that shows the same listing several times, with nothing saying when (issue 22): the
last is diagnosed, and the earlier ones come with it so that the CLOSE_WAIT rule can compare
what stayed, went and came. A timed series is diagnosed with time instead."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.sources import latest_of
from tcphealth.sources.snapshot_file import snapshot_to_json
from tcphealth.sources.text.paste import read_paste

# Two looks at one node process's MySQL connections around one more request (the shape of
# mysqljs#47): the first CLOSE_WAIT is still there, and one more came.
TWO_LSOF_LOOKS = """\
me@host:~$ sudo lsof -p 4981 -P -n | grep 3306
node    4981 me    8u  IPv4 825503      0t0     TCP 127.0.0.1:53629->127.0.0.1:3306 (CLOSE_WAIT)
(one more request)
me@host:~$ sudo lsof -p 4981 -P -n | grep 3306
node    4981 me    8u  IPv4 825503      0t0     TCP 127.0.0.1:53629->127.0.0.1:3306 (CLOSE_WAIT)
node    4981 me    9u  IPv4 825662      0t0     TCP 127.0.0.1:53630->127.0.0.1:3306 (CLOSE_WAIT)
"""


def test_the_last_capture_carries_the_earlier_listings() -> None:
    captures = read_paste(TWO_LSOF_LOOKS.splitlines(), "paste")
    assert [len(c.sockets) for c in captures] == [1, 2]
    latest = latest_of("paste", captures)
    assert latest.sockets == captures[-1].sockets
    assert latest.earlier_listings == (captures[0].sockets,)
    # A snapshot file keeps the one look it is.
    assert "earlier_listings" not in snapshot_to_json(latest)


def test_a_timed_series_carries_no_untimed_listings() -> None:
    captures = read_paste(TWO_LSOF_LOOKS.splitlines(), "paste")
    timed = [
        dataclasses.replace(
            c, host=dataclasses.replace(c.host, taken_at=float(n), taken_at_known=True)
        )
        for n, c in enumerate(captures)
    ]
    assert latest_of("paste", timed).earlier_listings == ()


def test_two_listings_where_the_pile_grows_warn_about_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "paste.txt"
    path.write_text(TWO_LSOF_LOOKS, "utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert result.exit_code == 1, result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert (finding["code"], finding["severity"], finding["pid"]) == (
        "close-wait-held",
        "WARNING",
        4981,
    )
    assert "none of the earlier ones was closed and 1 more came" in finding["summary"]

    # The last listing alone is two CLOSE_WAIT of one look: below every threshold, with no
    # age, so no warning -- their age decides.
    alone = tmp_path / "alone.txt"
    alone.write_text("\n".join(TWO_LSOF_LOOKS.splitlines()[3:]) + "\n", "utf-8")
    quiet = CliRunner().invoke(main, ["check", "--from", str(alone), "--format", "json"])
    assert quiet.exit_code == 0, quiet.output
    (info,) = json.loads(quiet.stdout)["findings"]
    assert (info["code"], info["severity"], info["pid"], info["count"]) == (
        "close-wait-age-decides",
        "INFO",
        4981,
        2,
    )
