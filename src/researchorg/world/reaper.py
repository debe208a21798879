"""The reaper: kills a slot's training processes when the slot's own process dies, however it dies.

A run's command starts a session of its own (so a Ctrl-C in a terminal does not
reach it and a timeout can kill its whole group); the price is that nothing
kills it when the process that started it is killed. On a Ray node that
process is the slot's actor, which Ray kills with SIGKILL when the head that
owns it dies, when the actor is killed, or when its node is removed, and a
training run would go on holding its GPU unrecorded (Ray's known pitfall).

Ray does kill a dead worker's child processes, by process id: that takes the
run's leader (a protected harness, say) and leaves the rest of its group, its
training among them, running. So each slot actor starts this reaper, in a
session of its own and detached (it forks and its first process exits, so it
is no child of the actor for Ray to kill), with a pipe on its stdin: the actor
writes `+PGID` when a run starts and `-PGID` when it ended. When the pipe
closes (the actor is gone, by any death), the reaper kills every group still
registered (SIGTERM, then SIGKILL a moment later) and exits.

    python -m researchorg.world.reaper
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _kill(groups: set[int], grace: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if sig == signal.SIGTERM:
            time.sleep(grace)


def main() -> None:
    if os.fork() > 0:  # detached: the process that started us reaps this one at once, the reaper goes on
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe's end stops it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if len(line) > 1 and line[0] in "+-" and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    _kill(groups)


if __name__ == "__main__":
    main()
