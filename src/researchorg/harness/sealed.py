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


# -- a private copy of public text ---------------------------------------------------------------------------

SEAL_KEY_ENV = "RESEARCHORG_SEAL_KEY"  # the lab's secret for private copies: the harness and its box only


def machine_key() -> str:
    """This machine's secret for private copies of sealed text (made once, readable by this user only, in
    $XDG_CACHE_HOME/researchorg or ~/.cache/researchorg: out of every run's and agent's sandbox). Runs on
    machines with the same key score the same validation text; a cluster's head hands its key to its nodes."""
    import os
    import secrets
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "researchorg"
    path = folder / "seal.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        fresh = folder / f"seal.key.{os.getpid()}"
        fresh.write_text(secrets.token_hex(32))
        fresh.chmod(0o600)
        try:
            os.link(fresh, path)  # the first writer's key wins, should two labs make one at once
        except FileExistsError:
            pass
        fresh.unlink()
        return path.read_text().strip()


def private_copy(source: str, key: bytes, name: str) -> str | None:
    """Python `source` with the names it binds (its functions, classes, arguments, variables and attributes)
    swapped among themselves by a permutation drawn from `key` and `name`, in its code and in its comments and
    strings alike; keywords, builtins, dunders and imported names stay. It reads like the original, with the
    same names in the same proportions, but no file on any machine holds it: whoever lacks `key` cannot make it,
    so a model cannot have memorized it. None where `source` does not parse."""
    import ast
    import builtins
    import hashlib
    import hmac
    import io
    import keyword
    import random
    import re
    import tokenize
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, tokenize.TokenError, ValueError):
        return None
    bound, imported = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            bound.add(node.attr)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            imported.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    fixed = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | imported | {"self", "cls"}
    names = sorted(n for n in bound if n not in fixed and not (n.startswith("__") and n.endswith("__")))
    if len(names) < 2:
        return None
    draw = random.Random(hmac.new(key, name.encode(), hashlib.sha256).digest())
    shuffled = list(names)
    draw.shuffle(shuffled)
    mapping = dict(zip(names, shuffled, strict=True))
    # the other words of its comments and strings, swapped among themselves too
    word = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
    prose = sorted({w for t in tokens if t.type in (tokenize.COMMENT, tokenize.STRING) for w in word.findall(t.string)}
                   - set(mapping) - fixed)
    swapped = list(prose)
    draw.shuffle(swapped)
    mapping.update(zip(prose, swapped, strict=True))
    words = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(mapping, key=len, reverse=True)) + r")\b")
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    out, at = [], 0
    for token in tokens:
        begin = starts[token.start[0] - 1] + token.start[1] if token.start[0] - 1 < len(starts) else len(source)
        end = starts[token.end[0] - 1] + token.end[1] if token.end[0] - 1 < len(starts) else len(source)
        if token.type == tokenize.NAME and token.string in mapping:
            new = mapping[token.string]
        elif token.type in (tokenize.COMMENT, tokenize.STRING):
            new = words.sub(lambda m: mapping[m.group(1)], token.string)
        else:
            continue
        out += [source[at:begin], new]
        at = end
    out.append(source[at:])
    return "".join(out)
