"""Experiments on a real local Ray cluster (`ray.cluster_utils.Cluster`): a node with two (fake) GPUs and a
CPU-only node, the head with no resources of its own, as a plain `ray start --head` cluster with no custom
resources. The lab is the real command line (`researchorg run --ray ADDRESS`) in a subprocess, on the accuracy
test task: runs are placed on both nodes on disjoint slots, logs come back while a run trains, a node that joins
adds slots and one that leaves mid-run has its experiment run again elsewhere, a timeout and a Ctrl-C kill the
run's processes on the node, and a head killed with `kill -9` leaves nothing running and resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from researchorg import Program
from researchorg.errors import ConfigError
from researchorg.world.cluster import RayCluster, node_root, task_hash
from tests.conftest import NO_NOISE, alive, cli, copy_task, default_sigint, pids_in_log, write_org

ray_cluster_utils = pytest.importorskip("ray.cluster_utils")

# a real Ray cluster of two nodes takes a minute or more per test: .ci/run runs them (pytest -m benchmark)
pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def cluster():
    made = ray_cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    made.gpu_node = made.add_node(num_cpus=2, num_gpus=2)
    made.cpu_node = made.add_node(num_cpus=2, env_vars={"RESEARCHORG_SANDBOX": "landlock"})
    made.wait_for_nodes()
    yield made
    made.shutdown()


def program(tmp_path: Path, agents: int, **task: str) -> Path:
    source = copy_task(tmp_path)
    toml = source / "task.toml"
    for key, value in task.items():
        toml.write_text(toml.read_text().replace(f"{key} = ", f"{key} = {value}\n# was: ", 1))
    org = write_org(tmp_path / "org.toml", "tuner", count=agents, rigor=NO_NOISE)
    root = tmp_path / "program"
    cli("init", str(root), "--task", str(source), "--org", str(org))
    return root


def start(root: Path, cluster, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "researchorg", "run", str(root), "--ray", cluster.address, *args],
                            env={**os.environ, "COLUMNS": "200", **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)


def wait_for(what, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what.__name__}")


def processes_under(path: Path) -> list[int]:
    """Live processes whose working directory is under `path` (a node's checkouts)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(entry / "cwd").resolve().is_relative_to(path) and alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_runs_spread_over_both_nodes_logs_stream_back_and_slots_follow_nodes_that_join_and_leave(tmp_path, cluster):
    root = program(tmp_path, agents=4)
    lab = start(root, cluster, "--max-experiments", "16", ACCURACY_SLEEP="2")
    ledger = Program(root).ledger

    def streaming():  # a run still recorded as running whose log on the head already shows its first lines
        return [e for e in ledger.experiments(status="running") if e.log_path and Path(e.log_path).is_file()
                and "seed " in Path(e.log_path).read_text()]
    assert wait_for(streaming)

    # a node joins while the org runs: its runs hang, with a child; its sandbox is Landlock alone, whose runs
    # bubblewrap does not kill with their parent (as on a machine without bubblewrap, and as a protected
    # harness, which runs outside the sandbox)
    joined = cluster.add_node(num_cpus=1, env_vars={"ACCURACY_HANG": "1", "RESEARCHORG_SANDBOX": "landlock"})
    prefix = f"ray-{joined.node_id[:6]}-"

    def hanging_on_joined_node():
        return [e for e in ledger.experiments(status="running") if e.slot.startswith(prefix)
                and Path(e.log_path).is_file() and pids_in_log(e.log_path)]
    try:
        victim = wait_for(hanging_on_joined_node)[0]
    except BaseException:
        lab.kill()
        raise
    finally:  # the node dies as a machine does: nothing shuts down (and no later test meets its hanging runs)
        cluster.remove_node(joined, allow_graceful=False)
    # its run's processes outlive the node's Ray processes, and the slot's reaper kills them (they would hang a
    # minute)
    wait_for(lambda: pids_in_log(victim.log_path) == [], timeout=20)
    out, _ = lab.communicate(timeout=240)
    assert lab.returncode == 0, out

    runs = ledger.experiments()
    assert len([e for e in runs if e.status != "interrupted"]) == 16, out
    lost = ledger.experiment(victim.id)
    assert lost.status == "interrupted" and "left the cluster" in lost.reason, lost
    again = [e for e in runs if e.id > lost.id and e.commit == lost.commit and e.seed == lost.seed]
    assert again and again[0].status in ("keep", "discard") and not again[0].slot.startswith(prefix), again
    assert processes_under(node_root()) == []  # nothing of the removed node's run goes on
    key = Program(root).key  # the nodes keep no log the head has (the removed node's stays with it)
    assert [p.name for p in (node_root() / key / "logs").glob("*")] in ([], [f"{lost.id:05d}.log"])

    finished = [e for e in runs if e.status in ("keep", "discard")]
    gpu = f"ray-{cluster.gpu_node.node_id[:6]}-gpu"
    cpu = f"ray-{cluster.cpu_node.node_id[:6]}-cpu"
    assert {e.slot[:len(gpu)] for e in finished} >= {gpu} and any(e.slot.startswith(cpu) for e in finished)
    by_slot: dict[str, list] = {}
    for e in finished:
        by_slot.setdefault(e.slot, []).append(e)
        seen = Path(e.log_path).read_text()
        if e.slot.startswith(gpu):  # Ray pins one GPU per slot; a CPU slot sees none
            assert e.hardware == "cuda:gpu" and ("cuda '0'" in seen or "cuda '1'" in seen), seen
        else:
            assert e.hardware.startswith("cpu:") and "cuda ''" in seen, seen
        assert "accuracy:" in seen and e.summary.get("node")
        assert "sleep 2" in seen  # the task's pass_env, from the head's environment to the run on the node
    gpus_seen = {next(line for line in Path(e.log_path).read_text().splitlines() if line.startswith("cuda"))
                 for slot, rows in by_slot.items() if slot.startswith(gpu) for e in rows}
    assert gpus_seen == {"cuda '0'", "cuda '1'"}  # the node's two GPU slots hold different GPUs
    for rows in by_slot.values():  # one experiment at a time per slot: a run leaves its slot before the next
        # starts there (its decision, recorded later, may end after: `ran_until` is when it left; the stamps of
        # two writes in a row differ by a little)
        rows.sort(key=lambda e: e.started_at)
        assert all(a.ran_until <= b.started_at + 0.1 for a, b in zip(rows, rows[1:], strict=False))
    events = [e.kind for e in ledger.events()]
    assert "slot_joined" in events and "slot_left" in events and "run_lost" in events


@pytest.mark.slow
def test_tinylm_trains_on_a_node_through_its_protected_harness_with_the_data_prepared_there(tmp_path, cluster):
    pytest.importorskip("torch")
    root = tmp_path / "program"
    cli("init", str(root), "--task", "tinylm", "--budget", "10")  # two at once on 2 cores, imports included
    done = cli("run", str(root), "--ray", cluster.address, "--max-experiments", "2")
    assert "reached --max-experiments" in done.stdout + done.stderr
    program = Program(root)
    runs = program.ledger.experiments()
    assert len(runs) == 2 and all(e.status == "measured" and e.metric is not None and e.slot.startswith("ray-")
                                  for e in runs), [(e.status, e.reason[:200]) for e in runs]
    assert all(e.summary["num_params"] > 0 and e.summary.get("node") for e in runs)
    assert "val_bpb:" in Path(runs[0].log_path).read_text()  # the harness's log, back on the head
    assert (node_root() / "prepared" / task_hash(program.ledger.program().protected_hashes)).is_file()


def test_a_node_of_a_new_hardware_class_gets_its_own_noise_floor(tmp_path, cluster):
    """...and, the org screening its proposals (screen-gate), each node hands a screen a quarter of the budget and
    the floor's and gates' runs all of it (the accuracy task prints what it was given; its log comes back)."""
    source = copy_task(tmp_path)
    org = write_org(tmp_path / "org.toml", "tuner", count=3, rigor="\n[rigor]\nnoise_runs = 2\n")
    org.write_text(org.read_text().replace('name = "test-org"', 'name = "test-org"\npolicy = "screen-gate"'))
    root = tmp_path / "program"
    cli("init", str(root), "--task", str(source), "--org", str(org))
    lab = start(root, cluster, "--max-experiments", "16", ACCURACY_SLEEP="1")
    ledger = Program(root).ledger
    wait_for(lambda: len(ledger.experiments()) >= 3)
    joined = cluster.add_node(num_cpus=1)  # one CPU: a slot of one thread, a class the run has not seen
    try:
        out, _ = lab.communicate(timeout=180)
    finally:
        cluster.remove_node(joined)
    assert lab.returncode == 0, out
    runs = ledger.experiments()
    new = {e.hardware for e in runs if e.slot.startswith(f"ray-{joined.node_id[:6]}-")}
    assert len(new) == 1 and new.pop().endswith(":1t")
    classes = {e.hardware for e in runs}
    assert len(classes) == 3 and all(ledger.noise_floor(h) is not None for h in classes), classes
    assert all(len([e for e in runs if e.kind == "noise" and e.hardware == h and e.fidelity == 1]) == 2
               for h in classes)
    assert any(e.fidelity < 1 for e in runs) and any(e.fidelity == 1 for e in runs)
    for e in runs:
        if e.status != "interrupted" and e.log_path and Path(e.log_path).is_file():
            said = next(line for line in Path(e.log_path).read_text().splitlines() if line.startswith("seed "))
            assert said.endswith(f"budget {0.25 if e.fidelity < 1 else 1}"), (e.id, e.kind, said)


def test_a_timeout_and_a_ctrl_c_kill_the_runs_on_the_node_and_the_same_command_resumes(tmp_path, cluster):
    root = program(tmp_path, agents=3)
    lab = start(root, cluster, "--max-experiments", "6", ACCURACY_HANG="1")
    ledger = Program(root).ledger
    timed_out = wait_for(lambda: ledger.experiments(status="timeout"), timeout=90)
    assert "killed after" in timed_out[0].reason
    assert pids_in_log(timed_out[0].log_path) == []  # the child the run left hanging died with its group

    def hanging():  # a second-wave run whose hanging child is alive on the node
        return [e for e in ledger.experiments(status="running") if e.id > 3 and Path(e.log_path).is_file()
                and pids_in_log(e.log_path)]
    in_flight = wait_for(hanging, timeout=60)
    lab.send_signal(signal.SIGINT)
    out, _ = lab.communicate(timeout=60)
    assert lab.returncode == 130, out
    for e in in_flight:
        assert ledger.experiment(e.id).status == "interrupted"
        assert pids_in_log(e.log_path) == []
    assert processes_under(node_root()) == []

    done = cli("run", str(root), "--ray", cluster.address, "--max-experiments", "6")
    assert "reached --max-experiments" in done.stdout + done.stderr
    assert len([e for e in ledger.experiments() if e.status != "interrupted"]) == 6


def test_a_head_killed_with_kill_9_leaves_no_run_on_the_cluster_and_resumes(tmp_path, cluster):
    root = program(tmp_path, agents=2)
    lab = start(root, cluster, "--max-experiments", "4", ACCURACY_HANG="1")
    ledger = Program(root).ledger
    in_flight = wait_for(lambda: [e for e in ledger.experiments(status="running")
                                  if Path(e.log_path).is_file() and pids_in_log(e.log_path)], timeout=90)
    lab.kill()
    lab.communicate()
    # the head's actors die with it, and each slot's reaper kills what its actor had running (the hanging
    # children would live for a minute): the cluster frees their slots in seconds
    killed_at = time.monotonic()
    wait_for(lambda: all(pids_in_log(e.log_path) == [] for e in in_flight), timeout=30)
    assert time.monotonic() - killed_at < 30
    key = Program(root).key
    done = cli("run", str(root), "--ray", cluster.address, "--max-experiments", "4")
    assert "reached --max-experiments" in done.stdout + done.stderr
    for e in in_flight:
        settled = ledger.experiment(e.id)
        assert settled.status == "interrupted" and "stopped before this experiment finished" in settled.reason
    assert not list((node_root() / key / "running").glob("*"))  # nothing registered as running on the nodes
    assert len([e for e in ledger.experiments() if e.status != "interrupted"]) == 4


def test_a_bench_on_a_real_task_spreads_its_programs_over_the_clusters_slots(tmp_path, cluster):
    task = copy_task(tmp_path)
    folder = tmp_path / "spec"
    folder.mkdir()
    for name, backend in (("tuner", "tuner"), ("random", "random")):
        (folder / f"{name}.toml").write_text(f'name = "{name}"\npolicy = "greedy"\n[rigor]\nnoise_runs = 0\n'
                                             f'[[roles]]\nname = "researcher"\nbackend = "{backend}"\n')
    spec = folder / "bench.toml"
    spec.write_text(f'name = "on-ray"\ntask = "{task}"\nrepeats = 2\n[compute]\nslots = 1\nexperiments = 3\n'
                    f'ray = "{cluster.address}"\n[[orgs]]\nfile = "tuner.toml"\n[[orgs]]\nfile = "random.toml"\n')
    cli("bench", str(spec), "--out", str(tmp_path / "out"))
    programs = sorted((tmp_path / "out" / "programs").iterdir())
    assert [p.name for p in programs] == ["random-0", "random-1", "tuner-0", "tuner-1"]
    runs = [e for p in programs for e in Program(p).ledger.experiments()]
    assert len(runs) == 12 and all(e.status in ("keep", "discard") for e in runs), [(e.status, e.reason) for e in runs]
    nodes = {e.slot.split("-")[1] for e in runs}
    assert all(e.slot.startswith("ray-") for e in runs)
    assert nodes == {cluster.gpu_node.node_id[:6], cluster.cpu_node.node_id[:6]}  # both nodes had programs


def test_an_address_nothing_answers_at_and_a_bad_one_are_one_line_each_and_record_nothing(tmp_path):
    root = program(tmp_path, agents=1)
    proc = cli("run", str(root), "--ray", "127.0.0.1:1", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines == ["error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused "
                                              "(is `ray start --head` running there?)"], lines
    for address, says in (("nonsense", "give auto or the head's HOST:PORT"),
                          ("ray://host:10001", "Ray Client addresses are not supported")):
        with pytest.raises(ConfigError, match=says):
            RayCluster(address)
    assert Program(root).ledger.experiments() == []
