"""`researchorg bench` on the simulated task in the simulated world: equal compute, repeats, intervals, a report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from researchorg import Program, SqlLedger
from tests.conftest import alive, cli, copy_task, default_sigint, pids_in_log
from tests.fakes.llm_servers import FakeOpenAI, Reply, tool_call

EXAMPLE = Path(__file__).parents[2] / "examples" / "bench" / "simulated"


def _spec(tmp_path: Path, repeats: int = 4, experiments: int = 150) -> Path:
    folder = tmp_path / "spec"
    shutil.copytree(EXAMPLE, folder)
    spec = folder / "bench.toml"
    spec.write_text(spec.read_text().replace("repeats = 8", f"repeats = {repeats}")
                    .replace("experiments = 400", f"experiments = {experiments}"))
    return spec


def test_bench_compares_orgs_with_equal_compute_and_writes_every_report(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    proc = cli("bench", str(spec), "--out", str(out), "--target", "0.05")
    assert "[12/12]" in proc.stdout
    assert "mean ± 95% CI over 4 repeats" in proc.stdout and "final improvement of main" in proc.stdout
    assert "solo - solo-greedy: " in proc.stdout and "paired t-test" in proc.stdout  # the summary, not only files
    for name in ("report.md", "report.html", "report.json", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 500, name
    data = json.loads((out / "report.json").read_text())
    assert set(data["summary"]["orgs"]) == {"solo", "solo-greedy", "strong-few"}
    assert all(r["experiments"] == 150 for runs in data["runs"].values() for r in runs)  # equal compute
    solo = data["summary"]["orgs"]["solo"]
    assert solo["final_verified"][1] > 0 and 0 <= solo["reproduction_rate"][0] <= 1  # mean and CI half-width
    assert len(data["summary"]["paired"]) == 3
    # in simulation the pairs compare the truth (main's measured value flatters luck), and say so
    assert data["summary"]["paired_on"] == "final true improvement" and "on the final true improvement" in proc.stdout
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "solo-greedy" in html and "[compute]" in html  # self-contained
    assert "| solo |" in (out / "report.md").read_text()
    assert all(len(p) == 4 for r in data["runs"]["solo"] for p in r["verified_curve"])  # hours, slot-h, runs
    assert "median experiments to it" in (out / "report.md").read_text()
    # resumable: a second call recomputes nothing and reports the same
    again = cli("bench", str(spec), "--out", str(out), "--target", "0.05")
    assert json.loads((out / "report.json").read_text())["summary"] == data["summary"] and "[12/12]" in again.stdout
    # another seed is an independent rerun beside the first: other landscapes, intervals that overlap
    cli("bench", str(spec), "--out", str(out), "--seed", "100")
    rerun = json.loads((out / "report.json").read_text())
    assert all((out / "runs" / f"solo-{seed}.json").is_file() for seed in (0, 1, 2, 3, 100, 101, 102, 103))
    assert [r["repeat"] for r in rerun["runs"]["solo"]] == [100, 101, 102, 103] and "--seed 100" in rerun["spec"]
    for org, row in rerun["summary"]["orgs"].items():
        (m1, h1), (m2, h2) = data["summary"]["orgs"][org]["final_verified"], row["final_verified"]
        assert m1 != m2 and abs(m1 - m2) <= h1 + h2, org


CALIBRATED = Path(__file__).parents[2] / "examples" / "bench" / "calibrated"


def test_a_reference_org_sets_each_repeats_target_and_every_orgs_parallel_efficiency(tmp_path):
    """The shipped calibrated bench, cut to 2 repeats of 1 virtual hour and three orgs: the target of each
    repeat is what greedy-1 reached in it, read on the true curve; the reference's own efficiency is 1."""
    folder = tmp_path / "spec"
    shutil.copytree(CALIBRATED, folder)
    spec = folder / "bench.toml"
    text = spec.read_text().replace("repeats = 8", "repeats = 2").replace("hours = 8", "hours = 1")
    head, *orgs = text.split("[[orgs]]")
    spec.write_text("[[orgs]]".join([head, *[o for o in orgs if any(f'"{n}.toml"' in o for n in (
        "greedy-1", "greedy-8", "solo-8"))]]))
    out = tmp_path / "out"
    proc = cli("bench", str(spec), "--out", str(out))
    assert "parallel efficiency" in proc.stdout and "[6/6]" in proc.stdout
    data = json.loads((out / "report.json").read_text())
    assert data["summary"]["target"] == {"reference": "greedy-1", "value": None, "on": "true improvement"}
    rows = data["summary"]["orgs"]
    assert rows["greedy-1"]["parallel_efficiency"] == 1.0 and rows["greedy-1"]["reached_target"] == 1.0
    for run in data["runs"]["greedy-8"]:  # the true curve starts at 0 and ends at the true final improvement
        assert run["true_curve"][0][-1] == 0.0 and abs(run["true_curve"][-1][-1] - run["final_true"]) < 1e-12
    for label in ("greedy-8", "solo-8"):
        runs, reference = data["runs"][label], data["runs"]["greedy-1"]
        reached = [next((p for p in r["true_curve"] if p[-1] >= ref["true_curve"][-1][-1] - 1e-12), None)
                   for r, ref in zip(runs, reference, strict=True)]
        ref_at = [next(p for p in ref["true_curve"] if p[-1] >= ref["true_curve"][-1][-1] - 1e-12)[0]
                  for ref in reference]
        ratios = sorted(0.0 if hit is None else at / (8 * hit[0]) for hit, at in zip(reached, ref_at, strict=True)
                        if at > 0)
        if ratios:
            assert abs(rows[label]["parallel_efficiency"] - sum(ratios[:2]) / len(ratios[:2])) < 1e-9
    assert "Parallel efficiency: T(greedy-1)" in (out / "report.md").read_text()
    # a number is a target too (no reference, no efficiency); neither a number nor an org is one line
    number = cli("bench", str(spec), "--out", str(out), "--target", "0.001").stdout
    assert "median hours to it" in number and "parallel efficiency" not in number
    bad = cli("bench", str(spec), "--out", str(out), "--target", "fastest", check=False)
    assert bad.returncode == 1 and "--target: 'fastest' is neither" in bad.stderr and "Traceback" not in bad.stderr
    spec.write_text(spec.read_text().replace('target = "greedy-1"', 'target = "greedy-2"'))
    bad = cli("check", str(spec), check=False)
    assert bad.returncode == 1 and "target: 'greedy-2' is not an org of the bench" in bad.stderr


def test_check_validates_a_bench_spec_and_its_orgs(tmp_path):
    spec = _spec(tmp_path)
    assert "bench simulated-orgs on simulated, 4 repeats, 3 orgs: solo (researcher x8 (simulated), 8 slots)" \
        in " ".join(cli("check", str(spec)).stdout.split())
    (spec.parent / "strong-few.toml").write_text("name = 3\n")
    proc = cli("check", str(spec), check=False)
    assert proc.returncode == 1 and "strong-few.toml" in proc.stderr


def test_a_simulated_bench_of_real_backends_is_one_clear_error(tmp_path):
    spec = _spec(tmp_path)
    (spec.parent / "solo.toml").write_text((spec.parent / "solo.toml").read_text().replace('"simulated"', '"tuner"'))
    proc = cli("bench", str(spec), check=False)
    assert proc.returncode == 1 and "runs `simulated` agents only, not 'tuner'" in proc.stderr


def test_a_bench_on_a_real_task_runs_each_repeat_as_a_program_through_the_real_lab(tmp_path):
    task = copy_task(tmp_path)
    folder = tmp_path / "spec"
    folder.mkdir()
    for name, backend in (("tuner", "tuner"), ("random", "random")):
        (folder / f"{name}.toml").write_text(f'name = "{name}"\npolicy = "greedy"\n[rigor]\nnoise_runs = 0\n'
                                             f'[[roles]]\nname = "researcher"\nbackend = "{backend}"\n'
                                             '[[processes]]\nkind = "merge"\n')
    spec = folder / "bench.toml"
    spec.write_text(f'name = "real"\ntask = "{task}"\nrepeats = 2\nthreads = 1\n[compute]\nslots = 1\n'
                    'experiments = 5\nmachine_slots = 2\n[[orgs]]\nfile = "tuner.toml"\n[[orgs]]\n'
                    'file = "random.toml"\n')
    out = tmp_path / "out"
    cli("bench", str(spec), "--out", str(out))
    data = json.loads((out / "report.json").read_text())
    assert set(data["summary"]["orgs"]) == {"tuner", "random"}
    runs = [r for repeats in data["runs"].values() for r in repeats]
    assert len(runs) == 4 and all(r["experiments"] == 5 and r["final_true"] is None for r in runs)
    assert all(r["final_verified"] >= 0 for r in runs) and any(r["final_verified"] > 0 for r in runs)
    programs = sorted(p.name for p in (out / "programs").iterdir())
    assert programs == ["random-0", "random-1", "tuner-0", "tuner-1"]
    first = Program(out / "programs" / "random-0").ledger.experiments(agent="researcher")
    second = Program(out / "programs" / "random-1").ledger.experiments(agent="researcher")
    assert [e.description for e in first][1:] != [e.description for e in second][1:]  # other seeds, other search
    # two programs side by side on the machine's two slots, each on its own core
    slots = {e.slot for p in (out / "programs").iterdir() for e in Program(p).ledger.experiments()}
    assert slots == {"cpu0", "cpu1"}


def test_ctrl_c_interrupts_the_programs_running_side_by_side_and_the_same_command_resumes(tmp_path):
    task = copy_task(tmp_path)
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace("timeout_seconds = 4", "timeout_seconds = 120"))
    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "tuner.toml").write_text('name = "tuner"\npolicy = "greedy"\n[rigor]\nnoise_runs = 0\n[[roles]]\n'
                                       'name = "researcher"\nbackend = "tuner"\n[[processes]]\nkind = "merge"\n')
    spec = folder / "bench.toml"
    spec.write_text(f'name = "real"\ntask = "{task}"\nrepeats = 2\nthreads = 1\n[compute]\nslots = 1\n'
                    'experiments = 3\nmachine_slots = 2\n[[orgs]]\nfile = "tuner.toml"\n')
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "researchorg", "bench", str(spec), "--out", str(out)],
                            env={**os.environ, "ACCURACY_HANG": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_sigint)
    ledgers = [out / "programs" / f"tuner-{seed}" / ".researchorg" / "ledger.db" for seed in (0, 1)]
    deadline, running = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(running) < 2:  # both programs' first runs hang, side by side
        time.sleep(0.2)
        running = [e for db in ledgers if db.is_file() for e in SqlLedger(db).experiments(status="running")
                   if e.pid and Path(e.log_path).is_file() and "child" in Path(e.log_path).read_text()]
    assert len(running) == 2, proc.communicate(timeout=5)[0] if proc.poll() is not None else "no two runs"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped by Ctrl-C" in output and "Traceback" not in output, output
    for db in ledgers:
        (e,) = SqlLedger(db).experiments()
        assert e.status == "interrupted" and not any(alive(pid) for pid in pids_in_log(e.log_path))
    assert not list((out / "runs").glob("*.json"))
    cli("bench", str(spec), "--out", str(out))  # resumes: each program runs the rest, nothing twice
    for db in ledgers:
        statuses = [e.status for e in SqlLedger(db).experiments()]
        assert statuses[0] == "interrupted" and len(statuses) == 4 and "running" not in statuses
    assert (out / "report.md").is_file()


def test_a_bench_of_llm_agents_measures_tokens_and_dollars_per_merged_gain(tmp_path):
    fake = FakeOpenAI()
    try:
        folder = tmp_path / "spec"
        folder.mkdir()
        (folder / "llm.toml").write_text(
            f'name = "llm"\npolicy = "greedy"\n[rigor]\nnoise_runs = 0\n[[roles]]\nname = "researcher"\n'
            f'backend = "openai"\nmodel = "fake-model"\nbase_url = "{fake.base_url}"\n'
            'price_per_mtok = [1.0, 2.0]\n[[processes]]\nkind = "merge"\n')
        spec = folder / "bench.toml"
        spec.write_text(f'name = "llm"\ntask = "{copy_task(tmp_path)}"\nrepeats = 2\n[compute]\nslots = 1\n'
                        'experiments = 2\n[[orgs]]\nfile = "llm.toml"\n')
        per_repeat = [Reply(tool_calls=[tool_call("submit", {"description": "baseline", "hypothesis": "-"})]),
                      Reply(tool_calls=[tool_call("replace_in_file", {"path": "train.py", "old": "BONUS = 0.0",
                                                                      "new": "BONUS = 0.1"})]),
                      Reply(tool_calls=[tool_call("submit", {"description": "bonus", "hypothesis": "+0.1"})])]
        fake.script = per_repeat * 2
        out = tmp_path / "out"
        cli("bench", str(spec), "--out", str(out))
        data = json.loads((out / "report.json").read_text())
        runs = data["runs"]["llm"]
        assert all(r["merges"] == 1 and r["final_verified"] > 0.09 for r in runs)
        # every model call's usage (100 in, 20 out on this server) is counted, priced and divided by the merges
        assert sum(r["tokens"] for r in runs) == 120 * len(fake.requests) and len(fake.requests) >= 6
        assert abs(sum(r["cost_usd"] for r in runs) - len(fake.requests) * (100 * 1.0 + 20 * 2.0) / 1e6) < 1e-12
        tokens, _ = data["summary"]["orgs"]["llm"]["tokens_per_merge"]
        assert tokens == sum(r["tokens"] for r in runs) / 2
        assert "tokens per merged gain" in (out / "report.md").read_text()
    finally:
        fake.close()
