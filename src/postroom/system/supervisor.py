"""Several processes serving one port: ``postroom api --processes N``.

One Python process answers requests on one core. ``run_children`` forks N children and each serves on a listening
socket of its own, all bound to the same address with ``SO_REUSEPORT``, so the kernel spreads new connections over
them evenly. (One socket shared by every child balances badly: the child that happens to be idle takes most of
the connections, 23 of 32 in a trial.) The parent only supervises:

- SIGTERM or SIGINT: each child gets SIGTERM and shuts down gracefully (answers what it has begun, then exits);
  the parent exits when all have, 0 if all did so cleanly. The children run in a process group of their own, so a
  Ctrl-C in the terminal reaches them once, through the parent.
- A child that exits on its own (a crash, an out-of-memory kill): the parent stops the others and exits 1. A
  service manager restarts the whole unit (``deploy/systemd``); half of an API left running would hide the fault.
- The parent killed outright (SIGKILL): each child gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and shuts
  down gracefully, so no orphan keeps the port from the next start.

Nothing is shared in memory between the children: what they must agree on lives in the database, in the rate-limit
store (a counters file on SQLite, the database on PostgreSQL, or Redis) and in the metrics directory
(``<data dir>/api-metrics-<port>``, emptied as the parent starts and removed as it exits).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("postroom.supervisor")


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _terminate_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux), and leave at once if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def listening_socket(host: str, port: int, *, reuse_port: bool = False, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port``, inheritable by a forked child; an IPv6 host such as ``::`` also accepts
    IPv4 (peers then appear as ``::ffff:a.b.c.d``). ``reuse_port`` lets other sockets of this kind share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port`` that share it with ``SO_REUSEPORT``.

    A plain bind is tried first and released, so that a port already in use fails here as it would for one
    process, even if its owner also set ``SO_REUSEPORT`` (two installations must not split one port).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(listening_socket(host, port, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run_children(
    sockets: Sequence[socket.socket],
    serve: Callable[[socket.socket], int],
    *,
    on_exit: Callable[[int], None] = lambda pid: None,
) -> int:
    """Fork one child per socket, each running ``serve(its socket)`` and exiting with what it returns; supervise
    them as the module says. ``on_exit(pid)`` runs in the parent as each child is reaped."""
    children: dict[int, int] = {}
    stopping = False

    def stop(signum: int | None = None, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    # Set before the first fork, so that a signal meanwhile still reaches the children started so far; blocked
    # around each fork, so that it is handled by the parent once the child is on its list, or by the child only
    # once the child has its default handling back (never ``stop`` running in a child).
    signals = {signal.SIGTERM, signal.SIGINT}
    previous = {signum: signal.signal(signum, stop) for signum in signals}
    parent = os.getpid()
    for index, sock in enumerate(sockets):
        if stopping:
            break
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        pid = os.fork()
        if pid == 0:  # the child: default signal handling until its server sets its own, its socket only
            code = 1
            try:
                for signum in previous:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
                _terminate_with_parent(parent)
                os.setpgid(0, 0)
                for other in sockets:
                    if other is not sock:
                        other.close()
                code = serve(sock)
            except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
                log.exception("API process %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    for sock in sockets:
        sock.close()

    status = 0
    try:
        while children:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid)
            on_exit(pid)
            code = os.waitstatus_to_exitcode(raw)
            if not stopping:
                log.error("API process %d (pid %d) exited with %d; stopping the others", index, pid, code)
                status = 1
                stop()
            elif code not in (0, -signal.SIGTERM):  # uvicorn ends by the SIGTERM again once it has shut down
                status = 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status
