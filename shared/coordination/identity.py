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
import time

import psutil

Identity = tuple[str, int, float]

_mine: dict[int, Identity] = {}
_TICKS = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def machine() -> str:
    """Where pids mean the same thing: the host name and, on Linux, the PID namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}" if namespace else socket.gethostname()


def _since_boot(pid: int) -> float | None:
    """When process ``pid`` started, in seconds after the machine booted (Linux: the ``starttime``
    field of ``/proc/<pid>/stat``); None where there is no such file. Unlike a wall-clock start
    time it does not move when the clock is stepped (NTP, a VM resumed): the kernel derives the
    wall-clock one from the boot time, which a clock step shifts for every process at once."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    try:
        # The command name (field 2) may hold spaces and parentheses: count from the last ")".
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[19]) / _TICKS  # field 22, starttime, in clock ticks
    except (ValueError, IndexError):
        return None


def _uptime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def this_process() -> Identity:
    """(machine, pid, start) of the calling process (forked children differ). ``start`` is the
    start in seconds after boot where the system says (:func:`_since_boot`), else the wall-clock
    creation time."""
    pid = os.getpid()
    if pid not in _mine:
        since = _since_boot(pid)
        started = since if since is not None else float(psutil.Process(pid).create_time())
        _mine[pid] = (machine(), pid, started)
    return _mine[pid]


def process_alive(host: str, pid: int, started: float) -> bool:
    """False only when certain: the holder ran on this machine (:func:`machine`) and that process
    is gone (or a zombie, or its pid now names a process that started at another time). A holder
    elsewhere is presumed alive until its lease expires. ``started`` is a start after boot, or a
    wall-clock creation time (a holder recorded by an earlier release: no process can have started
    after the machine's whole uptime), compared with a second's slack."""
    if host != machine():
        return True
    try:
        proc = psutil.Process(pid)
        since = _since_boot(pid)
        if since is not None and started <= _uptime() + 1.0:
            if abs(since - started) > 1.0 / _TICKS:
                return False
        elif abs(float(proc.create_time()) - started) > 1.0:
            return False
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
