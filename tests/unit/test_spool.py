"""The write-ahead spool's files: whole lines only, sealing, adoption by the next live owner."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.store.rows import event_to_row, row_to_line
from proxy.store.spool import Spool, SpoolWriteError, owner_of
from tests.factories import make_event


def lines(n: int) -> list[bytes]:
    return [row_to_line(event_to_row(make_event())) for _ in range(n)]


def rows_in(spool: Spool, path: Path) -> list[str | None]:
    return [None if row is None else row["event_id"] for row in spool.read(path)]


class Writer:
    """``os.write`` as a disk that fills up: call ``n`` (from 1) writes ``plan[n]`` bytes of
    its data (0..len) or raises ENOSPC (-1); calls not in the plan write everything."""

    def __init__(self, plan: dict[int, int]) -> None:
        self.plan = plan
        self.calls = 0

    def __call__(self, fd: int, data: bytes) -> int:
        self.calls += 1
        size = self.plan.get(self.calls, len(data))
        if size < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data[:size])


def test_each_line_is_one_write_and_a_sealed_segment_reads_back(tmp_path: Path) -> None:
    writer = Writer({})
    spool = Spool(tmp_path, write=writer)
    batch = lines(3)
    for line in batch:
        spool.append(line)
    assert writer.calls == 3
    sealed = spool.seal()
    assert sealed is not None
    assert sealed.name.startswith("sealed-")
    assert owner_of(sealed) == spool.owner
    assert sealed.read_bytes() == b"".join(batch)
    assert spool.seal() is None  # nothing appended since
    spool.append(lines(1)[0])
    assert spool.active_path is not None
    assert spool.active_path.exists()  # a new active segment
    spool.sync()
    spool.close()


@pytest.mark.parametrize("failure", [10, 0, -1], ids=["short", "nothing", "enospc"])
def test_a_failed_write_raises_and_leaves_no_torn_line(tmp_path: Path, failure: int) -> None:
    spool = Spool(tmp_path, write=Writer({2: failure}))
    first, second, third = lines(3)
    spool.append(first)
    with pytest.raises(OSError, match="short write|No space left") as raised:
        spool.append(second)
    if failure >= 0:
        assert isinstance(raised.value, SpoolWriteError)
    spool.append(third)
    sealed = spool.seal()
    assert sealed is not None
    assert sealed.read_bytes() == first + third  # the failed line is cut off again, not glued


def test_a_torn_line_that_cannot_be_cut_stays_a_line_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_truncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    spool = Spool(tmp_path, write=Writer({2: 10}))
    first, second, third = lines(3)
    spool.append(first)
    monkeypatch.setattr("proxy.store.spool.os.ftruncate", cannot_truncate)
    with pytest.raises(SpoolWriteError):
        spool.append(second)
    monkeypatch.undo()
    spool.append(third)
    sealed = spool.seal()
    assert sealed is not None
    ids = rows_in(spool, sealed)
    assert [id_ is None for id_ in ids] == [False, True, False]  # torn, but a line alone


def test_write_segment_puts_rows_that_missed_the_disk_in_a_segment_of_their_own(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    batch = lines(4)
    path = spool.write_segment(batch)
    assert path.read_bytes() == b"".join(batch)
    assert spool.segments() == [path]
    assert not list(tmp_path.glob(".*.tmp"))


CRASHING_OWNER = textwrap.dedent(
    """
    import os, sys
    from proxy.store.spool import Spool
    spool = Spool(sys.argv[1])
    lines = sys.stdin.buffer.read().splitlines(keepends=True)
    spool.append(lines[0])
    spool.seal()
    spool.append(lines[1])
    os.kill(os.getpid(), 9)  # no close, no cleanup: the kernel drops its lock
    """
)


def test_the_files_of_a_killed_owner_are_adopted_once(tmp_path: Path) -> None:
    first, second = lines(2)
    subprocess.run(  # noqa: S603 - our own interpreter, no shell
        [sys.executable, "-c", CRASHING_OWNER, str(tmp_path)], input=first + second, check=False
    )
    assert len(list(tmp_path.glob("*.jsonl"))) == 2  # its sealed and its active segment
    heir, other = Spool(tmp_path), Spool(tmp_path)
    adopted = heir.adopt()
    assert [owner_of(path) for path in adopted] == [heir.owner, heir.owner]
    assert b"".join(path.read_bytes() for path in adopted) == first + second  # in order
    assert other.adopt() == []  # already taken
    assert {p.name for p in tmp_path.glob("owner-*.lock")} == {
        f"owner-{heir.owner}.lock",
        f"owner-{other.owner}.lock",
    }


def test_a_live_owner_keeps_its_files_and_a_cleanly_closed_one_hands_them_on(
    tmp_path: Path,
) -> None:
    live = Spool(tmp_path)
    live.append(lines(1)[0])
    live.seal()
    live.append(lines(1)[0])
    other = Spool(tmp_path)
    assert other.adopt() == []  # same process, other open file: its lock still holds
    live.close()  # stops with rows not yet in the database (say it was away)
    adopted = other.adopt()
    assert len(adopted) == 2
    assert sum(1 for path in adopted for _ in other.read(path)) == 2
