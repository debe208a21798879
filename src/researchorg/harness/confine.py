"""Run a command confined to a sandbox policy: `python -m researchorg.harness.confine POLICY_JSON -- ARGV...`.

The runner starts a task command this way (inside bubblewrap's namespaces where
they are available, see harness/sandbox.py): this process applies the policy's
Landlock rules, seccomp filter, no_new_privs and rlimits to itself, then becomes
the command, so the command and everything it starts stay confined. Without
bubblewrap (no PID namespace that ends with the command), it first forks: the
parent stays as the command's subreaper and, once the command exits, kills
whatever it left running, detached or not.
"""

from __future__ import annotations

import os
import signal
import sys

from researchorg.harness.sandbox import Policy, become_subreaper, bwrap, confine, kill_descendants


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit("usage: python -m researchorg.harness.confine POLICY_JSON -- ARGV...")
    policy, argv = Policy.from_json(sys.argv[1]), sys.argv[3:]
    if not bwrap():  # no PID namespace to end with the command: stay above it, and end what it leaves
        become_subreaper()
        child = os.fork()
        if child:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda signum, frame: os.kill(child, signum))
            _, status = os.waitpid(child, 0)
            kill_descendants()
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    confine(policy)
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"cannot start `{argv[0]}`: {err.strerror or err}", file=sys.stderr)
        os._exit(127)


if __name__ == "__main__":
    main()
