"""The sandbox of a training run (and of a coding-CLI agent), enforced by the kernel.

A run sees its checkout (read-write, its protected files read-only), its
artifact and temporary directories (read-write), the system and the Python
installation read-only, and nothing else: not the program's ledger, logs,
`.git`, other worktrees or slots, the user's home (where API keys and CLI
credentials live), the machine's /tmp, nor any path the task seals (tinylm's
validation split). It has no network unless the task declares it, no new
privileges, and bounded open files, file size, memory and processes.

Layers, each used where this machine has it and recorded per run:

- **namespaces** (bubblewrap, `bwrap`, where it is installed and works): the
  run gets a root of its own built from the paths above (a private /tmp,
  /dev and /proc), its own PID namespace (it cannot see or signal any
  process outside; when the harness dies, all of it dies), its own network
  namespace (no interface but loopback), IPC and UTS namespaces, and no
  capabilities;
- **Landlock** (Linux >= 5.13; probed with the syscall, ABI 1 to 7): the same
  file rules enforced again on whatever the run can name, then (ABI >= 4) no
  TCP bind or connect, and (ABI >= 6) no abstract unix sockets or signals to
  processes outside the sandbox; ptrace and /proc/<pid>/environ of outside
  processes are refused by every ABI;
- **seccomp** (where libseccomp is installed): no kernel keyring, eBPF,
  performance counters, userfaultfd, ptrace or cross-process memory calls;
  without namespaces, no unix socket (Landlock does not cover connecting to
  one by its path) and, for a run without network, no socket at all
  (Landlock covers TCP, not UDP, raw or packet sockets);
- **no_new_privs** and **rlimits** (always): no setuid gain; at most
  `files` open files, `file_size` bytes per file, `memory` bytes of data and
  `processes` processes (the kernel does not apply the last to root: the
  runner bounds processes, disk and output from outside, world/limits.py).

Where a layer is missing the run still works, and `protections(policy)`
says what is in force and what is not, so `status` can say it plainly.
What no layer here covers: GPU memory, CPU time beyond the harness's
deadline, and side channels (timing, cache).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

SYSTEM_ROOTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys")
GPU_DEVICES = ("nvidia", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "dri", "kfd")


def _file_size() -> int:
    """Bytes per file a run may write: the runner's disk limit for the run (RESEARCHORG_MAX_FILE_BYTES), which a
    harness passes on to its guest, else 64 GiB."""
    try:
        return int(os.environ.get("RESEARCHORG_MAX_FILE_BYTES", 64 << 30))
    except ValueError:
        return 64 << 30


@dataclass
class Limits:
    files: int = 4096  # open files
    file_size: int = field(default_factory=_file_size)  # bytes per file written
    memory: int | None = None  # bytes of data (RLIMIT_DATA); None: 90% of the machine's memory
    processes: int = 1024


@dataclass
class Policy:
    """What a run may see and do. Paths are absolute; `hidden` paths stay invisible even under a read root."""
    read: list[str]
    write: list[str]
    readonly: list[str] = field(default_factory=list)  # protected files inside the write roots
    hidden: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (path, target): /lib -> usr/lib on merged /usr
    network: bool = False
    limits: Limits = field(default_factory=Limits)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        return cls(**{**data, "limits": Limits(**data["limits"]), "links": [tuple(x) for x in data["links"]]})


_ENV_NAMES = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR", "TEMP", "TMP",
              "PWD", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH", "PYTHONPATH"}
_ENV_PREFIXES = ("LC_", "PYTHON", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "CUDA_", "NVIDIA_", "NCCL_", "HIP_", "ROCM_",
                 "ROCR_", "HSA_", "TORCH_", "XLA_", "JAX_", "RESEARCHORG_", "XDG_")
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE", "SESSION", "URL",
                 "DSN", "WEBHOOK", "NETRC")


def is_secret(name: str) -> bool:
    """Whether an environment variable may carry a credential (a key, a token, a URL with a password in it)."""
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def run_environment(environ: dict[str, str] | os._Environ, pass_env: list[str] = ()) -> dict[str, str]:
    """What a training run gets of `environ`: an allowlist (locale, paths, Python, threads, GPUs), never a
    variable that may carry a credential, plus the names in `pass_env` (a task's own secrets, e.g. a
    tracker's key)."""
    return {k: v for k, v in environ.items() if k in pass_env or (
        (k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)) and not is_secret(k))}


def python_roots() -> list[str]:
    """The directories this interpreter loads code from (its prefix, its venv, every sys.path entry)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    roots.update(p for p in sys.path[1:] if p and os.path.isabs(p))  # [0] is the script's directory
    return [os.path.realpath(p) for p in roots if os.path.exists(p)]


def policy_for(checkout: Path, writable: list[Path], *, readonly: list[Path] = (), hidden: list[Path] = (),
               read: list[Path] = (), network: bool = False, limits: Limits | None = None) -> Policy:
    """The sandbox of a run in `checkout`: the system and Python read-only, `checkout` and `writable` read-write
    (but `readonly` and the checkout's `.git`, which names the program's repository, read-only)."""
    readonly = [*readonly, Path(checkout) / ".git"]
    checkout = os.path.realpath(checkout)
    write = [checkout, *(os.path.realpath(p) for p in writable)]
    read = [p for p in (*SYSTEM_ROOTS, *python_roots(), *(os.path.realpath(r) for r in read)) if os.path.exists(p)
            and not any(_within(p, w) for w in write)]  # a checkout on sys.path stays writable only
    links = [(p, os.readlink(p)) for p in SYSTEM_ROOTS if os.path.islink(p)]
    return Policy(read=_outermost(read), write=_outermost(write), readonly=[os.path.realpath(p) for p in readonly],
                  hidden=[os.path.realpath(p) for p in hidden], links=links, network=network,
                  limits=limits or Limits())


def evaluation_policy(read: list[Path], scratch: Path) -> Policy:
    """The sandbox of an evaluation (harness/evaluate.py): the system, Python and `read` read-only; writable
    only its `scratch` directory (its TMPDIR, which nobody reads and which is removed after it); no network."""
    roots = [p for p in (*SYSTEM_ROOTS, *python_roots(), *(os.path.realpath(r) for r in read)) if os.path.exists(p)]
    links = [(p, os.readlink(p)) for p in SYSTEM_ROOTS if os.path.islink(p)]
    return Policy(read=_outermost(roots), write=[os.path.realpath(scratch)], links=links)


def link_home(paths: list[Path], home: Path) -> None:
    """The `paths` in your home, also under a run's own `home` (links to them: what its sandbox lets it read
    of them, it reads through the links), so code that looks for `~/.cache/...` finds them."""
    yours = Path(os.path.expanduser("~"))
    for path in paths:
        if path.is_relative_to(yours) and path != yours:
            link = home / path.relative_to(yours)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists() and not link.is_symlink():
                link.symlink_to(path)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    real = sorted({os.path.realpath(p) for p in paths})
    return [p for p in real if not any(q != p and _within(p, q) for q in real)]


# -- what this machine offers --------------------------------------------------------------------------------

_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446  # the same on every arch
_PR_SET_NO_NEW_PRIVS = 38


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mode() -> str:
    """RESEARCHORG_SANDBOX: "auto" (every layer this machine has), "landlock" (no namespaces) or "off" (rlimits
    and no_new_privs only: the kernel enforces no file or network rule; for debugging a task, never for a
    comparison you trust)."""
    mode = os.environ.get("RESEARCHORG_SANDBOX", "auto")
    return mode if mode in ("auto", "landlock", "off") else "auto"


@cache
def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none, or switched off)."""
    if not sys.platform.startswith("linux") or _mode() == "off":
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    version = libc.syscall(ctypes.c_long(_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


@cache
def bwrap() -> str | None:
    """The bubblewrap binary, if it is installed and can build a sandbox here (user namespaces allowed)."""
    path = shutil.which("bwrap")
    if path is None or _mode() != "auto":
        return None
    try:
        probe = subprocess.run([path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if probe.returncode == 0 else None


def protections(policy: Policy) -> tuple[list[str], list[str]]:
    """(what is enforced, what is not) for a run under `policy` on this machine, in words."""
    enforced, missing = [], []
    if bwrap():
        enforced.append("namespaces (bwrap: mount, pid, " + ("" if policy.network else "net, ") + "ipc, uts, user)")
    else:
        missing.append("namespaces (install bubblewrap: the run shares this machine's processes and network)")
    abi = landlock_abi()
    if abi:
        rules = ["files"] + (["tcp"] if abi >= 4 and not policy.network else []) + \
                (["signals", "abstract sockets"] if abi >= 6 else [])
        enforced.append(f"landlock v{abi} ({', '.join(rules)})")
        if abi < 6:
            missing.append("signals and abstract sockets to outside processes (Landlock ABI < 6)")
    else:
        missing.append("landlock (kernel < 5.13 or disabled): file rules")
    if not abi and not bwrap():
        missing.append("files: the run can read and write whatever this user can")
    if not policy.network and not bwrap() and abi < 4:
        missing.append("network")
    enforced.append("no_new_privs")
    enforced.append("rlimits (open files, file size, memory" + ("" if os.geteuid() == 0 else ", processes") + ")")
    if _seccomp() is not None:
        sockets = "" if bwrap() else ", unix sockets" if policy.network else ", sockets"
        enforced.append(f"seccomp (keyring, bpf, perf, userfaultfd, ptrace{sockets})")
    else:
        missing.append("seccomp (install libseccomp)")
        if not bwrap():
            missing.append("unix sockets reached by their path (no namespaces, no seccomp)")
            if not policy.network:
                missing.append("UDP and raw sockets (Landlock covers TCP only; no namespaces, no seccomp)")
    return enforced, missing


def summary(policy: Policy) -> str:
    """One line for a run's record: the layers in force."""
    enforced, _ = protections(policy)
    return "; ".join(enforced)


# -- building the sandbox ------------------------------------------------------------------------------------

def confined(argv: list[str], policy: Policy, cwd: Path) -> list[str]:
    """`argv` started through researchorg.harness.confine (Landlock, no_new_privs, rlimits) in the namespaces of
    `policy`: the command line that runs `argv` in its sandbox."""
    return command([sys.executable, "-m", "researchorg.harness.confine", policy.to_json(), "--", *argv], policy, cwd)


def command(argv: list[str], policy: Policy, cwd: Path) -> list[str]:
    """`argv` wrapped in the namespaces of `policy` (unchanged where bubblewrap is not available). The command
    itself must still call `confine(policy)`, as researchorg.harness.guest and .confine do (see `confined`)."""
    binary = bwrap()
    if binary is None:
        return argv
    args = [binary, "--unshare-all", "--die-with-parent", "--new-session"]
    if policy.network:
        args.append("--share-net")
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
    for name in _gpu_devices():
        args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for root in policy.read:
        args += ["--ro-bind", root, root]
    for path, target in policy.links:
        args += ["--symlink", target, path]
    for root in policy.write:
        args += ["--bind", root, root]
    for path in policy.readonly:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for path in policy.hidden:
        if os.path.isdir(path):
            args += ["--tmpfs", path]
        elif os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    args += ["--chdir", str(Path(cwd).resolve()), "--"]
    return args + list(argv)


# Landlock access rights (include/uapi/linux/landlock.h)
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FILE_RIGHTS_BY_ABI = {1: _EXECUTE | _WRITE_FILE | _READ_FILE, 3: 1 << 14, 5: 1 << 15}  # + truncate, ioctl_dev
_TCP = (1 << 0) | (1 << 1)  # bind, connect
_SCOPES = (1 << 0) | (1 << 1)  # abstract unix sockets, signals


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # execute .. make_sym
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= 1 << 14  # truncate
    if abi >= 5:
        rights |= 1 << 15  # ioctl_dev
    return rights


def _file_rights(abi: int) -> int:
    return sum(bits for version, bits in _FILE_RIGHTS_BY_ABI.items() if abi >= version)


_DEVICES = ("null", "zero", "full", "random", "urandom")


def _gpu_devices() -> list[str]:
    if not os.path.isdir("/dev"):
        return []
    return sorted({name for name in GPU_DEVICES if os.path.exists(f"/dev/{name}")} |
                  {entry for entry in os.listdir("/dev") if entry.startswith("nvidia")})


_PROC_SHARED = ("self", "thread-self", "cpuinfo", "meminfo", "stat", "loadavg", "uptime", "version", "filesystems",
                "sys")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the one its orphaned descendants are handed to (a child that detached with setsid
    stays in reach of `kill_descendants`). False where the kernel does not offer it."""
    return sys.platform.startswith("linux") and _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def descendants(root: int, spare: tuple[int, ...] = ()) -> list[int]:
    """The live processes below `root` (children, their children, ...), read from /proc; not the `spare`
    processes, nor what is below them."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in spare]
        found += children
        frontier += children
    return found


def kill_descendants(root: int | None = None, spare: tuple[int, ...] = ()) -> None:
    """SIGKILL everything below `root` (this process by default) but the `spare` processes and what is below
    them, and reap what was ours."""
    import signal
    for pid in descendants(root or os.getpid(), spare):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def confine(policy: Policy) -> None:
    """Confine this process and everything it starts to `policy`, for good (Landlock, seccomp, no_new_privs,
    rlimits)."""
    _set_limits(policy.limits)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    abi = landlock_abi()
    if abi:
        _landlock(policy, abi, libc)
    seccomp = _seccomp()
    if seccomp is not None:
        _filter_syscalls(seccomp, namespaces=bwrap() is not None, network=policy.network)


# System calls no training run needs, refused with EPERM: the kernel keyring, eBPF, performance counters,
# userfaultfd (a classic exploit aid), ptrace and cross-process memory access, kexec.
_REFUSED_SYSCALLS = ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "ptrace",
                     "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load")
_AF_UNIX = 1


@cache
def _seccomp() -> ctypes.CDLL | None:
    """libseccomp, where it is installed (it builds the BPF filter for this architecture)."""
    if _mode() == "off":
        return None
    for name in ("libseccomp.so.2", "libseccomp.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.c_void_p]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        return lib
    return None


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _filter_syscalls(lib: ctypes.CDLL, namespaces: bool, network: bool) -> None:
    """Refuse _REFUSED_SYSCALLS; without namespaces (a mount namespace to hide the machine's unix sockets, a
    network namespace with loopback only), creating unix sockets (Landlock does not cover connecting to one by
    its path, such as a container runtime's), and for a run without network every socket: Landlock covers
    TCP only, not UDP, raw or packet sockets."""
    allow, refuse = 0x7FFF0000, 0x00050000 | 1  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(EPERM)
    ctx = lib.seccomp_init(allow)
    if not ctx:
        raise OSError("seccomp_init failed")
    try:
        for name in _REFUSED_SYSCALLS:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add_array(ctx, refuse, number, 0, None) != 0:
                raise OSError(f"seccomp_rule_add {name}")
        number = lib.seccomp_syscall_resolve_name(b"socket")
        if not namespaces and not network:  # socketpair stays: pipes between a run's own processes
            if number >= 0 and lib.seccomp_rule_add_array(ctx, refuse, number, 0, None) != 0:
                raise OSError("seccomp_rule_add socket")
        elif not namespaces:
            unix = _ArgCmp(0, 4, _AF_UNIX, 0)  # SCMP_CMP_EQ on the domain argument
            if number >= 0 and lib.seccomp_rule_add_array(ctx, refuse, number, 1, ctypes.byref(unix)) != 0:
                raise OSError("seccomp_rule_add socket")
        if lib.seccomp_load(ctx) != 0:
            raise OSError("seccomp_load failed")
    finally:
        lib.seccomp_release(ctx)


def _set_limits(limits: Limits) -> None:
    memory = limits.memory
    if memory is None:
        memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.9)
    wanted = [(resource.RLIMIT_NOFILE, limits.files), (resource.RLIMIT_FSIZE, limits.file_size),
              (resource.RLIMIT_DATA, memory), (resource.RLIMIT_NPROC, limits.processes), (resource.RLIMIT_CORE, 0)]
    for which, value in wanted:
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _landlock(policy: Policy, abi: int, libc: ctypes.CDLL) -> None:
    libc.syscall.restype = ctypes.c_long
    everything = _fs_rights(abi)
    attr = _RulesetAttr(everything, _TCP if abi >= 4 and not policy.network else 0, _SCOPES if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(ctypes.c_long(_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    read = _EXECUTE | _READ_FILE | _READ_DIR
    device = read | _WRITE_FILE | (1 << 15 if abi >= 5 else 0)
    try:
        def allow(path: str, rights: int) -> None:
            if not os.path.isdir(path):
                rights &= _file_rights(abi)
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            try:
                rule = _PathBeneath(rights & everything, fd)
                if libc.syscall(ctypes.c_long(_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(1),
                                ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(fd)

        for root in policy.read:
            _grant(root, read, policy.hidden, allow)
        for root in policy.write:  # protected files inside stay writable here: only bubblewrap's mounts narrow it
            allow(root, everything)
        private = bwrap() is not None  # its /proc shows only the sandbox's processes, /dev/shm is its own
        # /tmp is refused even where it is private: TMPDIR is the run's own directory, and a write that seems to
        # land outside (a checkout under /tmp sits in the private one) should fail, not vanish unseen. Of /dev
        # only the harmless devices and the GPUs: not the machine's disks, terminals or shared memory.
        places = [(f"/dev/{name}", device) for name in _DEVICES] + [("/dev/shm", everything if private else 0)]
        places += [(f"/dev/{name}", device) for name in _gpu_devices()]
        # Outside a PID namespace only this process's own entry: /proc/<pid> of the harness holds its environment
        # and its open files, which Landlock's ptrace rule alone does not cover on every kernel.
        places += [("/proc", read)] if private else [(f"/proc/{name}", read) for name in _PROC_SHARED]
        for path, rights in places:
            if rights and os.path.exists(path):
                allow(path, rights)
        if libc.syscall(ctypes.c_long(_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _grant(path: str, rights: int, hidden: list[str], allow) -> None:
    """Allow `rights` beneath `path`, except beneath any `hidden` path (Landlock can only add, so the siblings
    on the way down to a hidden path get their own rules)."""
    if any(_within(path, h) for h in hidden):
        return
    if not any(_within(h, path) for h in hidden):
        allow(path, rights)
        return
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    allow(path, _READ_DIR)  # its names can be listed; what it holds gets the rules below
    for entry in entries:
        if not entry.is_symlink():
            _grant(entry.path, rights, hidden, allow)
