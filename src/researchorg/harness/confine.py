"""Run a command confined to a sandbox policy: `python -m researchorg.harness.confine POLICY_JSON -- ARGV...`.

The runner starts a task command this way (inside bubblewrap's namespaces where
they are available, see harness/sandbox.py): this process applies the policy's
Landlock rules, no_new_privs and rlimits to itself, then becomes the command, so
the command and everything it starts stay confined.
"""

from __future__ import annotations

import os
import sys

from researchorg.harness.sandbox import Policy, confine


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        raise SystemExit("usage: python -m researchorg.harness.confine POLICY_JSON -- ARGV...")
    confine(Policy.from_json(sys.argv[1]))
    argv = sys.argv[3:]
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        raise SystemExit(f"cannot start `{argv[0]}`: {err.strerror or err}") from None


if __name__ == "__main__":
    main()
