"""Who a process is, precisely enough to tell later whether it still exists.

Locks and concurrency leases in Redis record their holder as (machine, pid, start time); a
recycled pid has another start time. The machine is the host name and the PID namespace: two
containers that share a host name (host networking) but not their pids are different machines. A holder on this host whose process is gone held its lease
by accident of a crash (SIGKILL, OOM kill) and may be reclaimed at once instead of waiting for the
lease to expire; a holder on another host cannot be checked and is presumed alive.
"""

from __future__ import annotations

import os
import socket

import psutil

Identity = tuple[str, int, float]

_mine: dict[int, Identity] = {}


def machine() -> str:
    """Where pids mean the same thing: the host name and, on Linux, the PID namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}" if namespace else socket.gethostname()


def this_process() -> Identity:
    """(machine, pid, process start time) of the calling process (forked children differ)."""
    pid = os.getpid()
    if pid not in _mine:
        _mine[pid] = (machine(), pid, float(psutil.Process(pid).create_time()))
    return _mine[pid]


def process_alive(host: str, pid: int, started: float) -> bool:
    """False only when certain: the holder ran on this machine (:func:`machine`) and that process
    is gone (or a zombie). A holder elsewhere is presumed alive until its lease expires."""
    if host != machine():
        return True
    try:
        proc = psutil.Process(pid)
        if abs(float(proc.create_time()) - started) > 1.0:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
