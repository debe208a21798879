"""Offline agents over the task's declared knobs: `tuner` (Optuna TPE) and `random`.

Each Optuna trial becomes a real edit of the knob lines in the editable files,
committed and run like any other experiment. The first trial is the baseline
(the code as it is). Crashes, timeouts and invalid runs are told to Optuna as
failures. The study lives in a journal file in the agent's state directory, so
a restarted run continues the same study: a trial left running by a killed
process is settled from the ledger if the experiment finished, else failed and
asked again.

These agents need no LLM; they are the baselines an LLM organization must beat.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from researchorg.agents.base import AgentContext, Proposal
from researchorg.errors import AgentError
from researchorg.ledger import Experiment
from researchorg.task.knobs import describe_change, read_knob, write_knob
from researchorg.task.spec import Knob

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
        if sampler == "tpe":
            chosen: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=5, multivariate=True, constant_liar=True)
        else:
            chosen = optuna.samplers.RandomSampler(seed=seed)
        storage = JournalStorage(JournalFileBackend(str(ctx.state_dir / "optuna.journal")))
        self.study = optuna.create_study(study_name=ctx.name, storage=storage, sampler=chosen,
                                         direction=ctx.task.metric.direction, load_if_exists=True)
        self._settle_running_trials(ctx)
        if not self.study.trials:
            self.study.enqueue_trial(self._current_values(ctx), user_attrs={"baseline": True})

    def propose(self, ctx: AgentContext) -> Proposal:
        trial = self.study.ask(self.distributions)
        current = self._current_values(ctx)
        files = {k.file: ctx.read(k.file) for k in self.knobs}
        changes = []
        for knob in self.knobs:
            new = trial.params[knob.name]
            if new != current[knob.name]:
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
    def _current_values(self, ctx: AgentContext) -> dict[str, Any]:
        return {k.name: read_knob(ctx.read(k.file), k) for k in self.knobs}

    def _tell(self, experiment: Experiment) -> None:
        number = experiment.proposal["trial"]
        if experiment.status in ("keep", "discard") and experiment.metric is not None:
            self.study.tell(number, experiment.metric, skip_if_finished=True)
            return
        self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        if experiment.status == "interrupted":  # not a result: try the same point again
            self.study.enqueue_trial(experiment.proposal["params"], user_attrs=self._attrs(number))

    def _attrs(self, number: int) -> dict[str, Any]:
        return dict(self.study.trials[number].user_attrs)

    def _settle_running_trials(self, ctx: AgentContext) -> None:
        """Trials a killed process left running: settle them from the ledger, or ask them again."""
        running = {t.number: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if not running:
            return
        recorded = {e.proposal.get("trial"): e for e in ctx.history() if e.status != "running"}
        for number, trial in running.items():
            if number in recorded:
                self._tell(recorded[number])
            else:  # the process died before the experiment was recorded
                self.study.tell(number, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs))
