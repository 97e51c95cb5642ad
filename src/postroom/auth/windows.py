"""Fixed-window counters in a file that every process of an installation maps: the embedded server's rate-limit store.

On SQLite an installation may run several processes that answer API requests (``postroom api --processes N``,
``postroom smtp`` beside it), and a team's limits must hold across all of them. The counters live in a small file
beside the database: a header and a fixed number of slots, each ``(key hash, count, window end)``. Every process
maps the file, and every read or change of it happens under an exclusive ``flock``, so counts from concurrent
processes are never lost. The counts are not data: a file of another size or format is started again empty.

A key's slot is found by open addressing from its 64-bit BLAKE2b hash, looking at up to ``PROBE`` slots. A slot
never used (hash 0) ends the search; the slot of an ended window is reused by the next new key that needs one. When
every slot in reach holds a live window, the one ending soonest gives way (that key's count starts again); with
16,384 slots that takes thousands of teams calling within one window.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
from collections.abc import Iterator, Sequence

log = logging.getLogger("postroom.auth")

_MAGIC = b"PRWIN001"
_HEADER = struct.Struct("<8sI4x")  # format, number of slots
_SLOT = struct.Struct("<Qqd")  # key hash (0: never used), count, window end (unix seconds)
DEFAULT_SLOTS = 16_384
PROBE = 32


def key_hash(key: str) -> int:
    """The slot key of ``key``: 64 bits of BLAKE2b, never 0 (which marks a slot never used)."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1


class WindowFile:
    """The counters file at ``path``, mapped into this process."""

    def __init__(self, path: str, *, slots: int = DEFAULT_SLOTS) -> None:
        self._slots = slots
        self._size = _HEADER.size + slots * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._hashes: dict[str, int] = {}
        try:
            os.fchmod(self._fd, 0o600)  # a team's request volume is nobody else's business
            with self._locked():
                if os.fstat(self._fd).st_size != self._size or os.pread(self._fd, _HEADER.size, 0) != self._header:
                    os.ftruncate(self._fd, 0)  # another format, or a new file: start empty
                    os.ftruncate(self._fd, self._size)
                    os.pwrite(self._fd, self._header, 0)
                # Every page on disk now: touching a page of a sparse mapping on a full disk kills the process
                # with SIGBUS, where a failed allocation here is an error at start-up.
                os.posix_fallocate(self._fd, 0, self._size)
            self._map = mmap.mmap(self._fd, self._size)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def _header(self) -> bytes:
        return _HEADER.pack(_MAGIC, self._slots)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _hash(self, key: str) -> int:
        value = self._hashes.get(key)
        if value is None:
            if len(self._hashes) > 10_000:
                self._hashes.clear()
            value = self._hashes[key] = key_hash(key)
        return value

    def _offsets(self, value: int) -> Iterator[int]:
        for step in range(min(PROBE, self._slots)):
            yield _HEADER.size + ((value + step) % self._slots) * _SLOT.size

    def _find(self, value: int, now: float) -> tuple[int | None, int]:
        """The offset of the slot holding ``value`` (or None), and of the slot a new window for it would take."""
        free: int | None = None
        soonest: tuple[float, int] | None = None
        for offset in self._offsets(value):
            held, _count, ends = _SLOT.unpack_from(self._map, offset)
            if held == value:
                return offset, offset
            if held == 0:
                return None, offset if free is None else free
            if free is None and ends <= now:
                free = offset
            if soonest is None or ends < soonest[0]:
                soonest = (ends, offset)
        if free is None:
            assert soonest is not None
            log.warning("rate-limit counters file full around one slot: a live window was started again")
            free = soonest[1]
        return None, free

    def add(self, counters: Sequence[tuple[str, int]], now: float) -> list[tuple[int, float]]:
        """Add one to the window of each ``(key, seconds)``, starting a window of that length where none is live:
        for each, its count after that and when its window ends (unix seconds)."""
        results: list[tuple[int, float]] = []
        with self._locked():
            for key, seconds in counters:
                value = self._hash(key)
                held, offset = self._find(value, now)
                count, ends = (0, now + seconds)
                if held is not None:
                    _value, live_count, live_ends = _SLOT.unpack_from(self._map, held)
                    if live_ends > now:
                        count, ends = live_count, live_ends
                _SLOT.pack_into(self._map, offset, value, count + 1, ends)
                results.append((count + 1, ends))
        return results

    def window(self, key: str, now: float) -> tuple[int, float] | None:
        """The live window of ``key``: its count and end; None when it has none."""
        with self._locked():
            held, _ = self._find(self._hash(key), now)
            if held is None:
                return None
            _value, count, ends = _SLOT.unpack_from(self._map, held)
        return (count, ends) if ends > now else None

    def clear(self, key: str) -> None:
        """End the window of ``key``."""
        value = self._hash(key)
        with self._locked():
            held, _ = self._find(value, 0.0)
            if held is not None:
                _SLOT.pack_into(self._map, held, value, 0, 0.0)

    def clear_all(self) -> int:
        """End every window; how many slots were in use."""
        with self._locked():
            used = sum(1 for n in range(self._slots) if _SLOT.unpack_from(self._map, _HEADER.size + n * _SLOT.size)[0])
            self._map[_HEADER.size :] = bytes(self._size - _HEADER.size)
        return used

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
