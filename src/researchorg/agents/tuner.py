"""Offline agents over the task's declared knobs: `tuner` (Optuna TPE) and `random`.

Each Optuna trial becomes a real edit of the knob lines in the editable files,
committed and run like any other experiment. The first trial is the baseline
(the code as it is); where the lab's noise floor measures the baseline anyway,
the tuner does not run it again but tells the trial the noise floor's mean once
it is known. Crashes, timeouts and invalid runs are told to Optuna as
failures. The ledger is the study's only record: the study lives in memory
(Optuna's in-memory storage, a few KB a trial, where its journal file takes
about 16) and a restarted run rebuilds it from the agent's recorded proposals
under their own trial numbers, so it continues the same study; a proposal a
killed run left unfinished is asked again. (A baseline the noise floor
measured has no row of its own, and a resumed study starts without it.)

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
from optuna.trial import TrialState, create_trial

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


def distribution(knob: Knob) -> BaseDistribution:
    """The Optuna distribution of a knob's values."""
    if knob.type == "int":
        return IntDistribution(int(knob.low), int(knob.high), log=knob.log)
    if knob.type == "float":
        return FloatDistribution(knob.low, knob.high, log=knob.log)
    return CategoricalDistribution(knob.choices)


def trials_of(experiments: list[Experiment], knobs: list[Knob]) -> list[optuna.trial.FrozenTrial]:
    """The finished proposals that set every knob, as complete Optuna trials (for Optuna's analysis and
    storages: parameter importance, optuna-dashboard). A value outside a knob's range today is left out."""
    spaces = {k.name: distribution(k) for k in knobs}
    trials = []
    for e in experiments:
        params = e.proposal.get("params")
        if e.kind != "proposal" or not isinstance(params, dict) or params.keys() != spaces.keys() \
                or e.status not in ("keep", "discard") or e.metric is None:
            continue
        try:
            trials.append(create_trial(params=params, distributions=spaces, value=e.metric,
                                       user_attrs={"experiment": e.id, "agent": e.agent, "status": e.status}))
        except ValueError:
            continue
    return trials


def export_optuna(experiments: list[Experiment], knobs: list[Knob], direction: str, storage: str,
                  prefix: str) -> dict[str, int]:
    """Write each tuner's trials into an Optuna storage (an RDB URL, or a journal file path), one study per
    agent named `prefix/agent`, replacing an earlier export of it: `optuna-dashboard STORAGE` opens them.
    Returns the trials written per study."""
    if "://" not in storage:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(storage))
    by_agent: dict[str, list[Experiment]] = {}
    for e in experiments:
        by_agent.setdefault(e.agent, []).append(e)
    written = {}
    for agent, mine in sorted(by_agent.items()):
        trials = trials_of(mine, knobs)
        if not trials:
            continue
        name = f"{prefix}/{agent}"
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        study.add_trials(trials)
        written[name] = len(trials)
    return written


class TunerAgent:
    """An Optuna ask/tell loop whose trials are edits of the task's knobs."""

    blocking = False  # an ask takes milliseconds: the engine calls it in its loop

    def __init__(self, ctx: AgentContext, sampler: str = "tpe", seed: int = 0):
        if not ctx.task.knobs:
            raise AgentError(f"agent {ctx.name}: the {sampler} backend needs knobs, and task {ctx.task.name} "
                             "declares none in its task.toml")
        self.knobs = ctx.task.knobs
        self.distributions = {k.name: distribution(k) for k in self.knobs}
        self.study = optuna.create_study(study_name=ctx.name, direction=ctx.task.metric.direction)
        self._numbers: dict[tuple, list[int]] = {}  # a configuration -> the trials that asked for it
        retries = self._rebuild(ctx)
        resumed = len(self.study.get_trials(deepcopy=False))
        if resumed:  # a resumed study goes on sampling, it does not replay its first points (and two
            # agents' resumed seeds do not meet: seed + trials would make 0 + 3 and 1 + 2 the same stream)
            seed = random.Random(f"{seed}/{resumed}").randrange(2**32)
        if sampler == "tpe":
            self.study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True,
                                                            constant_liar=True)
        else:
            self.study.sampler = optuna.samplers.RandomSampler(seed=seed)
        for params, attrs in retries:
            self.study.enqueue_trial(params, user_attrs=attrs)
        if not resumed:
            self.study.enqueue_trial(self._current_values(ctx), user_attrs={"baseline": True})

    def propose(self, ctx: AgentContext) -> Proposal | None:
        self._settle_baseline(ctx)
        current = self._current_values(ctx)
        for _ in range(MAX_ASKS):
            trial = self.study.ask(self.distributions)
            self._numbers.setdefault(_key(self.knobs, trial.params), []).append(trial.number)
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
                        data={"trial": trial.number, "params": trial.params,
                              **({"baseline": True} if baseline else {})})

    def observe(self, ctx: AgentContext, experiment: Experiment) -> None:
        if "trial" in experiment.proposal:  # not the lab's own runs (e.g. a merge re-run)
            self._tell(experiment)

    # --------------------------------------------------------------------------
    def _tried(self, trial: optuna.Trial, current: dict[str, Any]) -> bool:
        """Whether `trial`'s values ran before (or are the code as it is); if so the trial is told that result."""
        key = _key(self.knobs, trial.params)
        trials = self.study.get_trials(deepcopy=False)
        same = [trials[n] for n in self._numbers[key] if n != trial.number]
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
        return dict(self.study.get_trials(deepcopy=False)[number].user_attrs)

    def _rebuild(self, ctx: AgentContext) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The study as the ledger records it: each proposal of this agent a trial under its own number (numbers
        no row holds, such as points told an earlier result, become failed trials), a finished one with its
        metric. Returns the points to ask again, with their trial attributes: proposals a killed run left
        unfinished and no later one tried."""
        rows = {e.proposal["trial"]: e for e in ctx.history()
                if e.kind == "proposal" and isinstance(e.proposal.get("trial"), int) and e.proposal["trial"] >= 0}
        retries: dict[tuple, tuple[dict[str, Any], dict[str, Any]]] = {}  # key -> (params, user attrs)
        for number in range(max(rows, default=-1) + 1):
            e = rows.get(number)
            params = e.proposal.get("params") if e is not None else None
            trial = None
            if isinstance(params, dict) and params.keys() == self.distributions.keys():
                finished = e.status in ("keep", "discard") and e.metric is not None
                try:  # a value outside a knob's range (the task.toml changed since) leaves a failed trial
                    trial = create_trial(params=params, distributions=self.distributions,
                                         value=e.metric if finished else None,
                                         state=TrialState.COMPLETE if finished else TrialState.FAIL)
                except ValueError:
                    trial = None
                else:
                    key = _key(self.knobs, params)
                    self._numbers.setdefault(key, []).append(number)
                    retries.pop(key, None)
                    if e.status in ("interrupted", "running"):
                        retries[key] = params, {"retry": True, **({"baseline": True} if e.proposal.get("baseline")
                                                                  else {})}
            self.study.add_trial(trial or create_trial(state=TrialState.FAIL))
        return list(retries.values())
