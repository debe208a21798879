"""Offline agents over the task's declared knobs: `tuner` (Optuna TPE) and `random`.

Each Optuna trial becomes a real edit of the knob lines in the editable files,
committed and run like any other experiment. The first trial is the baseline
(the code as it is); where the lab's noise floor measures the baseline anyway,
the tuner does not run it again but tells the trial the noise floor's mean once
it is known. Crashes, timeouts and invalid runs are told to Optuna as
failures. The study lives in a journal file in the agent's state directory, so
a restarted run continues the same study: a trial left running by a killed
process is settled from the ledger if the experiment finished, else failed and
asked again.

No configuration runs twice: a trial whose values were tried before (the
sampler repeats itself on small spaces, and a resumed study must not replay
its start) is told the earlier result instead of running, and the sampler's
seed moves on with the number of trials, so a resumed study samples new points.

These agents need no LLM; they are the baselines an LLM organization must beat.
"""

from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from researchorg.agents.base import AgentContext, Proposal
from researchorg.errors import AgentError
from researchorg.ledger import Experiment
from researchorg.task.knobs import describe_change, format_value, read_knob, write_knob
from researchorg.task.spec import Knob

optuna.logging.set_verbosity(optuna.logging.WARNING)
MAX_ASKS = 50  # points asked in a row that all ran before: the space is exhausted


def _key(knobs: list[Knob], params: dict[str, Any]) -> tuple:
    """A configuration as the files will hold it (floats are written to 3 significant digits)."""
    return tuple(format_value(k, params[k.name]) if k.name in params else None for k in knobs)


def _distribution(knob: Knob) -> BaseDistribution:
    if knob.type == "int":
        return IntDistribution(int(knob.low), int(knob.high), log=knob.log)
    if knob.type == "float":
        return FloatDistribution(knob.low, knob.high, log=knob.log)
    return CategoricalDistribution(knob.choices)


class TunerAgent:
    """An Optuna ask/tell loop whose trials are edits of the task's knobs."""

    blocking = False  # an ask takes milliseconds: the engine calls it in its loop

    def __init__(self, ctx: AgentContext, sampler: str = "tpe", seed: int = 0):
        if not ctx.task.knobs:
            raise AgentError(f"agent {ctx.name}: the {sampler} backend needs knobs, and task {ctx.task.name} "
                             "declares none in its task.toml")
        self.knobs = ctx.task.knobs
        self.distributions = {k.name: _distribution(k) for k in self.knobs}
        journal = ctx.state_dir / "optuna.journal"
        # the program's run lock is held, so no other process writes this journal: a lock left by a killed run is
        # stale (Optuna would wait out its 30 s grace period first, without a word)
        (ctx.state_dir / "optuna.journal.lock").unlink(missing_ok=True)
        storage = JournalStorage(JournalFileBackend(str(journal)))
        self.study = optuna.create_study(study_name=ctx.name, storage=storage, direction=ctx.task.metric.direction,
                                         load_if_exists=True)
        if self.study.trials:  # a resumed study goes on sampling, it does not replay its first points (and two
            # agents' resumed seeds do not meet: seed + trials would make 0 + 3 and 1 + 2 the same stream)
            seed = random.Random(f"{seed}/{len(self.study.trials)}").randrange(2**32)
        if sampler == "tpe":
            self.study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True,
                                                            constant_liar=True)
        else:
            self.study.sampler = optuna.samplers.RandomSampler(seed=seed)
        self._settle_running_trials(ctx)
        if not self.study.trials:
            self.study.enqueue_trial(self._current_values(ctx), user_attrs={"baseline": True})

    def propose(self, ctx: AgentContext) -> Proposal | None:
        self._settle_baseline(ctx)
        current = self._current_values(ctx)
        for _ in range(MAX_ASKS):
            trial = self.study.ask(self.distributions)
            if trial.user_attrs.get("baseline") and self._lab_measures_baseline(ctx):
                trial.set_user_attr("awaits_noise_floor", True)  # told the floor's mean once known
                continue
            if trial.user_attrs.get("retry") or not self._tried(trial, current):
                break
        else:
            return None  # every point the sampler offers was tried: the space is exhausted
        files = {k.file: ctx.read(k.file) for k in self.knobs}
        changes = []
        for knob in self.knobs:
            new = trial.params[knob.name]
            if format_value(knob, new) != format_value(knob, current[knob.name]):
                files[knob.file] = write_knob(files[knob.file], knob, new)
                changes.append(describe_change(knob, current[knob.name], new))
        baseline = bool(trial.user_attrs.get("baseline"))
        description = "baseline" if baseline else (", ".join(changes) or "rerun of the current best")
        return Proposal(description=description, files=files,
                        hypothesis="" if baseline else f"{self.study.sampler.__class__.__name__} trial {trial.number}",
                        data={"trial": trial.number, "params": trial.params})

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        if "trial" in experiment.proposal:  # not the lab's own runs (e.g. a merge re-run)
            self._tell(experiment)

    # --------------------------------------------------------------------------
    def _tried(self, trial: optuna.Trial, current: dict[str, Any]) -> bool:
        """Whether `trial`'s values ran before (or are the code as it is); if so the trial is told that result."""
        key = _key(self.knobs, trial.params)
        same = [t for t in self.study.trials if t.number != trial.number and _key(self.knobs, t.params) == key]
        if key == _key(self.knobs, current) and not trial.user_attrs.get("baseline"):
            earlier = [t for t in same if t.state == TrialState.COMPLETE]
        else:
            earlier = [t for t in same if t.state != TrialState.WAITING]
            if not earlier:
                return False
        done = [t for t in earlier if t.state == TrialState.COMPLETE]
        if done:
            self.study.tell(trial, done[-1].value)
        else:
            self.study.tell(trial, state=TrialState.FAIL)
        return True

    def _lab_measures_baseline(self, ctx: AgentContext) -> bool:
        """Whether the lab's noise floor runs the baseline (so the tuner's own baseline run would repeat it)."""
        return any(e.status in ("running", "measured") for e in ctx.ledger.experiments(kind="noise"))

    def _settle_baseline(self, ctx: AgentContext) -> None:
        """Tell a baseline trial left to the noise floor the floor's mean, once the floor's runs are done."""
        waiting = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.user_attrs.get("awaits_noise_floor")]
        if not waiting:
            return  # the ledger is read only while a trial waits for the floor
        noise = ctx.ledger.experiments(kind="noise")
        if any(e.status == "running" for e in noise):
            return
        values = [e.metric for e in noise if e.status == "measured" and e.metric is not None]
        for trial in waiting:
            if values:
                self.study.tell(trial.number, sum(values) / len(values))
            else:  # the floor failed: the baseline runs as the tuner's own trial
                self.study.tell(trial.number, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"baseline": True, "retry": True})

    def _current_values(self, ctx: AgentContext) -> dict[str, Any]:
        return {k.name: read_knob(ctx.read(k.file), k) for k in self.knobs}

    def _tell(self, experiment: Experiment) -> None:
        number = experiment.proposal["trial"]
        if experiment.status in ("keep", "discard") and experiment.metric is not None:
            self.study.tell(number, experiment.metric, skip_if_finished=True)
            return
        self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        if experiment.status == "interrupted":  # not a result: try the same point again
            self.study.enqueue_trial(experiment.proposal["params"], user_attrs={**self._attrs(number), "retry": True})

    def _attrs(self, number: int) -> dict[str, Any]:
        return dict(self.study.trials[number].user_attrs)

    def _settle_running_trials(self, ctx: AgentContext) -> None:
        """Trials a killed process left running: settle them from the ledger, or ask them again."""
        running = {t.number: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if not running:
            return
        recorded = {e.proposal.get("trial"): e for e in ctx.history() if e.status != "running"}
        for number, trial in running.items():
            if trial.user_attrs.get("awaits_noise_floor"):
                continue  # settled from the noise floor (_settle_baseline)
            if number in recorded:
                self._tell(recorded[number])
            else:  # the process died before the experiment was recorded (or the trial waited for the noise floor)
                self.study.tell(number, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={**trial.user_attrs, "retry": True})
