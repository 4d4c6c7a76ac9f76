"""Coordination of the fleet through Redis: locks, limiters, process identity and their Lua scripts.

- :mod:`.identity`: who a process is (machine, pid, start time) and whether it still exists;
- :mod:`.limits`: the fleet-wide token bucket and concurrency limiter, and lock acquisition;
- :mod:`.run_lock`: one lock per (connection, job) for pulls, mark runs and sweeps;
- :mod:`.close_lock`: one lock per (connection, period) naming the chain that drives its close;
- :mod:`.scripts`: every Lua script the above run.

Redis is volatile here: losing these keys delays work or resets a limit, never loses a record
(the ledger is the truth).
"""
