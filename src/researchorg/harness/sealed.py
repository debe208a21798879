"""Sealed data and its copies: what no training run and no agent may see (tinylm's validation split).

Pure path logic, no processes: the task specs use it to hide a task's sealed paths from coding agents, the
harnesses from training runs (harness/sandbox.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

_OTHER_STDLIBS = ("/usr/lib/python3*", "/usr/lib64/python3*", "/usr/local/lib/python3*", "/opt/*/lib/python3*",
                  "/opt/*/*/lib/python3*")


def with_copies(paths: list[Path]) -> list[Path]:
    """`paths` and every copy of them in the machine's other Python installations: a sealed standard-library
    package (tinylm's validation split) also lies, byte for byte, in the system's Python, which the sandbox
    shows read-only. The zipped standard libraries there are hidden too."""
    import glob
    import sysconfig
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    others = {Path(p) for pattern in _OTHER_STDLIBS for p in glob.glob(pattern)}
    others |= {Path(p) for p in glob.glob(f"{sys.base_prefix}/lib/python3*")}
    found = list(paths)
    for path in paths:
        try:
            relative = Path(path).resolve().relative_to(stdlib)
        except ValueError:
            continue
        found += [other / relative for other in sorted(others) if (other / relative).exists()]
        found += [other for other in sorted(others) if other.suffix == ".zip"]
    return sorted(set(found), key=str)
