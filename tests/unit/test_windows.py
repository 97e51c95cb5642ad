"""The rate-limit counters file (``postroom.auth.windows``): shared by processes, fixed windows, bounded slots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from postroom.auth.windows import WindowFile

_COUNTING_PROCESS = """
import json, sys, time
from postroom.auth.windows import WindowFile
windows = WindowFile(sys.argv[1])
seen = [windows.add([("team:7:all", 60), ("team:7:send", 1)], time.time())[0][0] for _ in range(400)]
print(json.dumps(seen))
"""


def test_counts_from_three_processes_at_once_are_none_lost_and_none_repeated(tmp_path: Path) -> None:
    path = str(tmp_path / "counters")
    WindowFile(path).close()
    processes = [
        subprocess.Popen([sys.executable, "-c", _COUNTING_PROCESS, path], stdout=subprocess.PIPE) for _ in range(3)
    ]
    seen: list[int] = []
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        seen.extend(json.loads(out))
    assert sorted(seen) == list(range(1, 1201))  # every count handed out exactly once
    window = WindowFile(path).window("team:7:all", 0.0)
    assert window is not None and window[0] == 1200


def test_windows_start_end_and_restart_at_their_boundaries(tmp_path: Path) -> None:
    windows = WindowFile(str(tmp_path / "counters"))
    assert windows.add([("a", 60), ("b", 10)], 1000.0) == [(1, 1060.0), (1, 1010.0)]
    assert windows.add([("a", 60), ("b", 10)], 1009.9) == [(2, 1060.0), (2, 1010.0)]
    assert windows.add([("a", 60), ("b", 10)], 1010.0) == [(3, 1060.0), (1, 1020.0)]  # b's window ended
    assert windows.window("a", 1059.0) == (3, 1060.0)
    assert windows.window("a", 1060.0) is None
    windows.clear("a")
    assert windows.window("a", 1000.0) is None
    assert windows.add([("a", 60)], 1000.0) == [(1, 1060.0)]


def test_two_maps_of_one_file_share_their_counts(tmp_path: Path) -> None:
    one, other = WindowFile(str(tmp_path / "counters")), WindowFile(str(tmp_path / "counters"))
    one.add([("k", 60)], 0.0)
    assert other.add([("k", 60)], 1.0) == [(2, 60.0)]
    assert one.clear_all() == 1
    assert other.window("k", 2.0) is None


def test_a_new_key_takes_an_ended_window_slot_and_when_all_are_live_the_soonest_ending_gives_way(
    tmp_path: Path,
) -> None:
    windows = WindowFile(str(tmp_path / "counters"), slots=3)
    windows.add([("a", 100), ("b", 10), ("c", 50)], 0.0)
    windows.add([("a", 100), ("c", 50)], 1.0)
    # b's window has ended: d takes its slot, and a and c keep theirs
    assert windows.add([("d", 100)], 20.0) == [(1, 120.0)]
    assert windows.window("a", 20.0) == (2, 100.0)
    assert windows.window("c", 20.0) == (2, 50.0)
    # every slot live: e takes the one ending soonest (c's), the others keep their counts
    assert windows.add([("e", 100)], 30.0) == [(1, 130.0)]
    assert windows.window("c", 30.0) is None
    assert windows.window("a", 30.0) == (2, 100.0)
    assert windows.window("d", 30.0) == (1, 120.0)


def test_a_file_of_another_format_is_started_again_empty_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "counters"
    path.write_bytes(b"not a counters file")
    windows = WindowFile(str(path))
    assert windows.add([("k", 60)], 0.0) == [(1, 60.0)]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    windows.close()
    resized = WindowFile(str(path), slots=8)  # a file made with another number of slots counts from nothing
    assert resized.window("k", 1.0) is None


def test_the_rate_limit_store_makes_the_directory_its_file_lives_in(tmp_path: Path) -> None:
    """The app (and so its rate limiter) may be built before the database has made the data directory."""
    import asyncio

    from postroom.auth.ratelimit import FileStorage

    store = FileStorage(path=tmp_path / "not made yet" / "postroom.db.rate-limits")
    assert asyncio.run(store.incr_many([("k", 60)]))[0][0] == 1
    asyncio.run(store.close())
