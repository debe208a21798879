"""results.tsv in autoresearch's exact format, and the ledger behind it."""

import csv
import io

from researchorg import SqlLedger
from researchorg.ledger.export import results_json, results_tsv


def _ledger_with_runs(tmp_path):
    ledger = SqlLedger(tmp_path / "ledger.db")
    ledger.create_program("p", "t", "val_bpb", "minimize", "b" * 40, {})
    ledger.ensure_agent("a", "researcher", "tuner", "agents/a", str(tmp_path), "b" * 40)
    rows = [("keep", 2.5, {"peak_mem_mb": 2048.0}, "baseline", ""),
            ("discard", 2.6, {"peak_mem_mb": 1024.0}, "wider\tmodel", ""),
            ("crash", None, {}, "oops", "exit code 1\nTraceback..."),
            ("timeout", None, {}, "slow", "killed after 90 s"),
            ("invalid", None, {}, "edit prepare", "changes prepare.py")]
    for i, (status, metric, summary, description, reason) in enumerate(rows):
        e = ledger.start_experiment("a", "p" * 40, f"{i:x}" * 40, diff="", description=description, hypothesis="",
                                    proposal={}, seed=1, log_dir=tmp_path)
        ledger.set_slot(e.id, "cpu0", "cpu")
        ledger.finish_experiment(e.id, status, agent_head="b" * 40, reason=reason, metric=metric, summary=summary)
    return ledger


def test_results_tsv_is_autoresearch_format(tmp_path):
    text = results_tsv(_ledger_with_runs(tmp_path).experiments(), "val_bpb")
    lines = text.splitlines()
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    assert lines[1] == "0000000\t2.500000\t2.0\tkeep\tbaseline"
    assert lines[2] == "1111111\t2.600000\t1.0\tdiscard\twider model"
    assert lines[3] == "2222222\t0.000000\t0.0\tcrash\toops (exit code 1)"
    assert lines[4] == "3333333\t0.000000\t0.0\tcrash\t[timeout] slow (killed after 90 s)"
    assert lines[5] == "4444444\t0.000000\t0.0\tcrash\t[invalid] edit prepare (changes prepare.py)"
    # autoresearch's analysis reads it as a 5-column tab-separated table
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    assert [r["status"].upper() for r in rows] == ["KEEP", "DISCARD", "CRASH", "CRASH", "CRASH"]
    assert all(len(r) == 5 and None not in r for r in rows)


def test_json_keeps_the_real_status_and_summary(tmp_path):
    import json

    rows = json.loads(results_json(_ledger_with_runs(tmp_path).experiments()))
    assert [r["status"] for r in rows] == ["keep", "discard", "crash", "timeout", "invalid"]
    assert rows[0]["peak_mem_mb"] == 2048.0 and rows[2]["reason"].startswith("exit code 1")
    assert rows[0]["log_path"].endswith("00001.log")


def test_ledger_survives_reopening_and_uses_wal(tmp_path):
    _ledger_with_runs(tmp_path).close()
    ledger = SqlLedger(tmp_path / "ledger.db")
    assert ledger.count() == 5 and ledger.count(exclude=("crash", "timeout", "invalid")) == 2
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_rewrite_a_page_at_a_time_matches_the_whole_ledger_as_runs_finish_out_of_order(tmp_path, monkeypatch):
    """What a run writes (the ledger read a few experiments at a time) is at every step what the whole ledger
    makes: a verification's row shows its proposal's status once decided, even when the proposal is on another
    page; a run that is running has no row until it ends."""
    from researchorg.ledger import export

    monkeypatch.setattr(export, "RESULT_PAGE", 2)
    ledger = SqlLedger(tmp_path / "ledger.db")
    ledger.create_program("p", "t", "val_bpb", "minimize", "b" * 40, {})
    ledger.ensure_agent("a", "researcher", "tuner", "agents/a", str(tmp_path), "b" * 40)
    path = tmp_path / "results.tsv"

    def start(description, **kw):
        return ledger.start_experiment("a", "p" * 40, "c" * 40, diff="", description=description, hypothesis="",
                                       proposal={}, seed=1, log_dir=tmp_path, **kw).id

    def finish(id_, status, metric=None):
        ledger.finish_experiment(id_, status, metric=metric)
        export.write_results_tsv(ledger, "val_bpb", path)
        assert path.read_text() == results_tsv(ledger.experiments(), "val_bpb")
        return [line.split("\t")[3] for line in path.read_text().splitlines()[1:]]

    proposal, other, third = start("wider"), start("deeper"), start("longer")
    verify = start("wider", kind="verify", rerun_of=proposal)  # on the second page, its proposal on the first
    assert finish(other, "crash") == ["crash"]
    assert finish(verify, "measured", 2.4) == ["crash", "discard"]  # its proposal is not decided yet
    assert finish(proposal, "keep", 2.3) == ["keep", "crash", "keep"]  # now the verification's row says keep
    assert finish(third, "discard", 2.5) == ["keep", "crash", "discard", "keep"]
    assert not list(tmp_path.glob(".results.tsv.*"))  # no temporary file left behind


def test_the_first_finished_measurement_of_the_baseline_is_the_first_row_as_a_keep(tmp_path, monkeypatch):
    """autoresearch's analysis.ipynb takes the first row as the baseline and plots the best of the keep rows: a
    proposal that finishes before the noise floor's first run, or is discarded, does not come first."""
    from researchorg.ledger import export

    monkeypatch.setattr(export, "RESULT_PAGE", 2)
    ledger = SqlLedger(tmp_path / "ledger.db")
    ledger.create_program("p", "t", "val_bpb", "minimize", "b" * 40, {})
    ledger.ensure_agent("a", "researcher", "tuner", "agents/a", str(tmp_path), "b" * 40)
    path = tmp_path / "results.tsv"

    def start(description, tree, **kw):
        return ledger.start_experiment("a", "b" * 40, tree[0] * 40, diff="", description=description,
                                       hypothesis="", proposal={}, seed=1, log_dir=tmp_path, tree=tree, **kw).id

    def rows():
        export.write_results_tsv(ledger, "val_bpb", path, baseline_tree="base")
        assert path.read_text() == results_tsv(ledger.experiments(), "val_bpb", baseline_tree="base")
        return [tuple(line.split("\t")[1:4:2]) for line in path.read_text().splitlines()[1:]]

    wider, noise, deeper, noise2 = (start("wider", "wide"), start("baseline", "base", kind="noise"),
                                    start("deeper", "deep"), start("baseline", "base", kind="noise"))
    ledger.finish_experiment(deeper, "crash")
    ledger.finish_experiment(wider, "discard", metric=2.6)
    # a young program: until the baseline is measured, a row with a value would be read as the baseline
    assert rows() == [("0.000000", "crash")]
    ledger.finish_experiment(noise2, "measured", metric=2.5)
    assert rows() == [("2.500000", "keep"), ("2.600000", "discard"), ("0.000000", "crash")]
    ledger.finish_experiment(noise, "measured", metric=2.52)
    assert rows() == [("2.500000", "keep"), ("2.600000", "discard"), ("2.520000", "keep"), ("0.000000", "crash")]


def test_an_interrupted_run_is_written_as_what_it_is_not_as_a_crash(tmp_path):
    """autoresearch's notebook counts CRASH rows as failures of their code and reads 0.000000 as a value; a run
    stopped by Ctrl-C says nothing about its code: its own status, no values."""
    import math

    ledger = _ledger_with_runs(tmp_path)
    e = ledger.start_experiment("a", "p" * 40, "9" * 40, diff="", description="stopped", hypothesis="",
                                proposal={}, seed=1, log_dir=tmp_path)
    ledger.finish_experiment(e.id, "interrupted", agent_head="b" * 40, reason="stopped by Ctrl-C")
    text = results_tsv(ledger.experiments(), "val_bpb")
    assert text.splitlines()[-1] == "9999999\t\t\tinterrupted\tstopped (stopped by Ctrl-C)"
    # as the notebook reads it: pd.to_numeric(errors="coerce"), statuses upper-cased, CRASH rows left out
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    values = [float(r["val_bpb"]) if r["val_bpb"] else math.nan for r in rows]
    statuses = [r["status"].strip().upper() for r in rows]
    assert statuses.count("CRASH") == 3 and statuses.count("INTERRUPTED") == 1
    valid = [v for v, s in zip(values, statuses, strict=True) if s != "CRASH"]
    assert valid[0] == 2.5  # the baseline is still the first row
    assert math.isnan(values[statuses.index("INTERRUPTED")])  # no 0.0 that a plot would draw


def test_where_the_org_merges_a_keep_not_on_main_is_written_as_a_discard(tmp_path):
    ledger = _ledger_with_runs(tmp_path)
    on_main = frozenset({ledger.experiments()[0].tree})
    lines = results_tsv(ledger.experiments(), "val_bpb", on_main=on_main).splitlines()
    assert lines[1].endswith("\tkeep\tbaseline")
    other = ledger.start_experiment("a", "p" * 40, "8" * 40, diff="", description="lucky", hypothesis="",
                                    proposal={}, seed=1, log_dir=tmp_path, tree="lucky")
    ledger.finish_experiment(other.id, "keep", agent_head="8" * 40, metric=2.4)
    last = results_tsv(ledger.experiments(), "val_bpb", on_main=on_main).splitlines()[-1]
    assert last == "8888888\t2.400000\t0.0\tdiscard\t[kept, not on main] lucky"
    assert results_tsv(ledger.experiments(), "val_bpb").splitlines()[-1].endswith("\tkeep\tlucky")
