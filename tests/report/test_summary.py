"""The summary every report shows: its baseline, best and step line, and the live view's counts without records."""

from researchorg.ledger import Experiment
from researchorg.report.summary import Tally, summarize
from researchorg.task.spec import MetricSpec

LOSS = MetricSpec(name="val_bpb", direction="minimize")
BASE = "c0"


def run(id_, status, metric, tree, kind="proposal", commit=None, parent=BASE, diff="x", rerun_of=None):
    return Experiment(id=id_, agent="a", parent_commit=parent, commit=commit or f"c{id_}", status=status,
                      metric=metric, tree=tree, kind=kind, diff=diff, rerun_of=rerun_of)


def program():
    return [
        run(1, "measured", 1.00, "t0", kind="noise", commit=BASE, parent=BASE, diff=""),
        run(2, "measured", 1.02, "t0", kind="noise", commit=BASE, parent=BASE, diff=""),
        run(3, "keep", 0.90, "t1"),  # lucky: its verifications say 0.99
        run(4, "measured", 0.99, "t1", kind="verify", rerun_of=3),
        run(5, "crash", None, "t2"),
        run(6, "discard", 1.10, "t3"),
        run(7, "keep", 0.95, "t4"),
        run(8, "measured", 0.96, "t4", kind="verify", rerun_of=7),
        run(9, "interrupted", None, "t5"),
    ]


def test_the_best_is_the_kept_code_with_the_best_mean_of_its_unselected_runs():
    summary = summarize(program(), LOSS, BASE)
    assert (summary.total, summary.by_status) == (9, {"measured": 4, "keep": 2, "crash": 1, "discard": 1,
                                                      "interrupted": 1})
    assert summary.baseline.id == 1 and summary.value(summary.baseline) == 1.01  # the noise floor's mean
    assert summary.best.id == 7 and summary.value(summary.best) == 0.96  # its verification, not its lucky run
    assert [(e.id, v) for e, v in summary.steps] == [(1, 1.01), (3, 0.99), (7, 0.96)]
    assert summary.describe(summary.best) == "0.960000 (#7)"
    assert round(summary.improvement, 6) == 0.05


def test_nothing_kept_beats_the_baseline_and_an_unchanged_run_stands_for_it_without_a_noise_floor():
    runs = [run(1, "keep", 1.00, "t0", diff=""), run(2, "keep", 1.05, "t1"), run(3, "discard", 0.5, "t2")]
    summary = summarize(runs, LOSS, BASE)
    assert summary.baseline.id == 1 and summary.best.id == 1 and [e.id for e, _ in summary.steps] == [1]
    assert summarize(runs[1:], LOSS).baseline.id == 2  # no commit, no unchanged run: the first keep


def test_a_tally_fed_runs_as_they_finish_agrees_with_the_summary_at_every_step():
    """The live view adds runs as they finish (a verification before the keep of its proposal) and asks the
    ledger, when a code is first kept, for the runs of it that came before."""
    runs = program()
    finish_order = [1, 2, 4, 3, 5, 6, 8, 7, 9]
    by_id = {e.id: e for e in runs}
    finished = []
    tally = Tally(LOSS, lambda tree: [e for e in finished if e.tree == tree], BASE)
    for n in finish_order:
        finished.append(by_id[n])
        tally.add(by_id[n])
        live, full = tally.summary(by_id.__getitem__, steps=False), summarize(sorted(finished, key=lambda e: e.id),
                                                                             LOSS, BASE)
        assert (live.total, live.by_status, live.baseline, live.best, live.runs) == \
            (full.total, full.by_status, full.baseline, full.best, full.runs)
        assert live.steps == []  # the live view does not draw the step line
    assert live.runs == {"t0": [1.00, 1.02], "t1": [0.99], "t4": [0.96]}  # only the codes a summary can name
