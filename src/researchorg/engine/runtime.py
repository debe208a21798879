"""The engine: an organization's agents work at once, and every experiment lives one life, in any world.

One experiment, from any agent, in the real lab or in simulation:

    reserve one experiment of the budget -> (adopt the program branch if it is better) -> think -> propose
    -> commit (a child of the agent's head) -> record as `running` -> guard (invalid?) -> wait for a slot
    -> run -> decide (re-running borderline candidates) -> record -> keep moves the agent's branch
    -> tell the agent -> processes (standup) -> verify and merge -> report an assignment

The rules are coroutines on one asyncio loop, run under the world's clock
(world/clock.py): wall time in the real lab, virtual time in simulation. So
while experiments run, their agents think about the next ones (up to the
role's `in_flight` at once) and other agents think too: slots do not wait for
agents. An agent that answers at once (simulated, tuner, random) is called in
the loop; a slow one (an LLM, a coding CLI, a person) in a thread of its own.

Roles: a submitting agent proposes and runs experiments; a lead (`submits =
false`) acts at the start and whenever it has news (a message from someone
else, a researcher of its becoming idle), sending assignments and merging;
a researcher that `waits_for_assignment` proposes only to answer one.

The ledger is the truth about where each agent's branch stands. A run that
starts after Ctrl-C or `kill -9` first settles what the last one left: an
experiment still marked `running` becomes `interrupted` (its process group is
killed if it survived), and every worktree is reset to its recorded head.
So no experiment is lost and none is recorded twice. A failing agent (its
backend raises) is paused with the reason in the ledger's events; the others
carry on.

Slots may come and go (a cluster's nodes, `cluster`: world/cluster.py). A run
whose slot vanished with it (status `lost`) is recorded interrupted with the
reason, and its code runs again, with the same seed, as a new experiment on
another slot. A slot of a hardware class the run has not seen gets its noise
floor measured.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from researchorg.agents import AgentContext, check_org, make_agent, probe_org
from researchorg.engine.budget import Budget, Limits, RunReport
from researchorg.engine.coordination import Member, Team, report_assignment
from researchorg.engine.evidence import LAB, Code, Evidence
from researchorg.engine.merging import Merger
from researchorg.engine.messages import PostOffice
from researchorg.engine.processes import Standup
from researchorg.engine.scheduler import Scheduler
from researchorg.errors import ConfigError, LabError
from researchorg.ledger import Experiment
from researchorg.stats.acceptance import make_policy, z_text
from researchorg.stats.load import at_load, lightest
from researchorg.stats.noise import fresh_seed
from researchorg.stats.score import code_sample
from researchorg.world.program import Program
from researchorg.world.protocol import LOST, RunResult, World
from researchorg.world.real import GitWorld

EventHandler = Callable[[str, dict[str, Any]], None]
LAB_PRIORITY = math.inf  # the noise floor gates every decision: its runs go first (scheduler.fair_share_key)


def _cause(reason: str) -> str:
    """A failure's first line without its figures: what two runs that failed alike share."""
    return re.sub(r"[0-9.]+", "#", (reason or "").splitlines()[0] if reason else "")


def _fix(reason: str) -> str:
    """What to change for a baseline that failed for `reason`, in words."""
    if "start-up" in reason or "never started" in reason:
        return "raise startup_allowance in task.toml, or run where the machine is less busy"
    if "No module named" in reason or "needs the Python module" in reason:
        return "install the missing module for the task's interpreter"
    if "past the budget" in reason:
        return "its training loop does not stop when the budget is spent: see prepare.time_left()"
    if "hand-off" in reason:
        return "raise handoff_allowance in task.toml"
    return "fix the task's code or its task.toml before spending the budget (the log says more)"


class Runtime:
    """Runs an organization in a world until a limit is reached, Ctrl-C, or the agents have nothing left."""

    def __init__(self, world: World | Program, slots: list | None = None, on_event: EventHandler | None = None,
                 seed_offset: int = 0, cluster: Any = None):
        self.world = GitWorld(world) if isinstance(world, Program) else world
        self.task, self.ledger, self.clock = self.world.task, self.world.ledger, self.world.clock
        self.org = self.world.org()
        self.seed_offset = seed_offset  # added to every agent's seed: repeats of a benchmark search differently
        self.cluster = cluster  # slots that come and go: `follow(on_join, on_leave)` returns its stopper
        self.scheduler = Scheduler(slots or (cluster.slots() if cluster else self.world.default_slots()))
        self.on_event = _shielded(on_event, self.world.ledger) if on_event else (lambda kind, data: None)
        rigor = self.org.rigor
        self.policy = make_policy(self.org.policy, rigor.sigmas, rigor.max_runs, rigor.explore_sigmas,
                                  rigor.gate_trigger, rigor.screen)
        self.cancel = threading.Event()  # set on Ctrl-C: runs are killed, agents' threads return, nothing new starts
        self.team = Team()
        self.post = PostOffice(self.ledger, self.team.delivered)
        self.evidence = Evidence(self.world, self.org, self.policy, self.post, self.extra_runs, self.cancel.is_set,
                                 self.on_event, sorted({slot.hardware() for slot in self.scheduler.slots}),
                                 lambda: self.budget.left() if self.budget is not None else None)
        self._merge_process = any(spec.kind == "merge" for spec in self.org.processes)
        self.merger = Merger(self.world, self.ledger, self.post, self.task.metric,
                             self.org.rigor.load_tolerance if self.policy.matched else None,
                             self.policy.screen) if self.org.merging else None
        self._gated = {v.experiment_id for v in self.ledger.verifications()}  # kept experiments a gate judged
        self.processes = [Standup(spec, self.ledger, self.post, self.task.metric, self.clock.now)
                          for spec in self.org.processes if spec.kind == "standup"]
        self.members = self.team.members
        self.budget: Budget | None = None
        self.report = RunReport(slots=len(self.scheduler.slots))
        self._stop: asyncio.Event | None = None
        self._winding_down = False  # every submitting agent has stopped: leads take a last turn and stop
        self._unmeasurable: LabError | None = None  # the baseline's log never shows the metric: the run stops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loops: set[asyncio.Task] = set()  # the agents' and the noise floor's own tasks

    # running ------------------------------------------------------------------------------
    def run(self, limits: Limits) -> RunReport:
        """Run the organization: the noise floor and the agents at once, until they are done or a limit."""
        return self._in_loop(lambda: self._run(limits))

    def measure_codes(self, agent: str, codes: list[tuple[Code, int]], kind: str,
                      hardware: str | None = None) -> list[list[Experiment]]:
        """An experiment plan: run each code its number of times with fresh seeds (kind `kind`, for `agent`),
        all at once through the scheduler, and return each code's runs. Ctrl-C stops it like a run."""
        async def plan() -> list[list[Experiment]]:
            self.recover()
            self.budget = Budget(Limits(), self.ledger.spent(exclude=("interrupted",)), self.clock.now)
            return list(await asyncio.gather(*(self.extra_runs(agent, code, kind, n, hardware)
                                               for code, n in codes)))
        return self._in_loop(plan)

    def _in_loop(self, main: Callable[[], Any]) -> Any:
        """Run the coroutine `main()` makes on a new loop of the world's clock, holding the world's run lock, with
        Ctrl-C (in the main thread) stopping it cleanly."""
        loop = self._loop = self.clock.new_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=len(self.org.agent_names()) + len(
            self.scheduler.slots) + 8, thread_name_prefix="researchorg"))
        self._stop = asyncio.Event()
        self.post.open(loop)
        # Ctrl-C, `kill` and a closed terminal all stop the run cleanly (a signal the process was started to ignore,
        # such as SIGHUP under nohup or SIGINT in a background job, stays ignored)
        signals = [sig for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                   if threading.current_thread() is threading.main_thread()
                   and signal.getsignal(sig) not in (signal.SIG_IGN, None)]
        for sig in signals:
            loop.add_signal_handler(sig, self.interrupt, sig)
        try:
            with self.world.run_lock():
                try:
                    return loop.run_until_complete(main())
                except BaseException:  # the lab itself failed: stop every run and task before saying why
                    self.cancel.set()
                    self._stopping()
                    loop.run_until_complete(self._drain())
                    raise
                finally:
                    self.world.flush()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _drain(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Stop as Ctrl-C does, from any thread: runs in flight are killed and recorded as interrupted, nothing
        new starts, and `run` returns with `stopped_by = "interrupted"` (and the report's `signal`)."""
        self.report.signal = self.report.signal or int(signum)
        self.cancel.set()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping)

    def _stopping(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self.scheduler.close()
        self.team.wake_all()

    @property
    def stopped(self) -> bool:
        return self.cancel.is_set()

    async def _run(self, limits: Limits) -> RunReport:
        self.recover()
        self.world.check_requirements(self.scheduler.slots)
        check_org(self.org, "org.toml", self.task)
        members = self._members()
        for line in probe_org(self.org):  # a dead server or a missing CLI fails here, before any compute is spent
            self.ledger.log_event("backend_probed", result=line)
        report = self.report
        recorded = self.ledger.spent(exclude=("interrupted",))
        self.budget = Budget(limits, recorded, self.clock.now)
        noise = self.evidence.noise_plan(self.budget.left())
        self.ledger.log_event("run_started", max_experiments=limits.max_experiments, max_hours=limits.max_hours,
                              slots=[s.name for s in self.scheduler.slots], agents=[m.name for m in members],
                              noise_runs=noise)
        self.on_event("run_started", {"noise_runs": noise, "agents": [m.name for m in members],
                                      "slots": [s.name for s in self.scheduler.slots]})
        started = self.clock.now()
        floor = self._spawn(self.evidence.noise_floors(noise))
        self._resume_merges(members)
        workers = [(m, self._spawn(self._researcher(m) if m.role.submits else self._lead(m))) for m in members]
        self._loops = {floor, *(task for _, task in workers)}
        submitters = [task for m, task in workers if m.role.submits]
        unfollow = self._follow(limits)
        try:
            if submitters:
                await asyncio.wait(submitters)
        finally:
            unfollow()
        self._winding_down = True
        self.team.wake_all()
        await asyncio.gather(floor, *(task for _, task in workers))
        while self._tasks:  # merges a lead started, and anything they started
            await asyncio.gather(*list(self._tasks))
        if self._unmeasurable is not None:
            for m in members:
                self.world.reset(m.name, self.ledger.agent(m.name).head_commit)
            self.ledger.log_event("run_stopped", stopped_by="unmeasurable", error=str(self._unmeasurable))
            raise self._unmeasurable
        if self.stopped:
            for m in members:
                self.world.reset(m.name, self.ledger.agent(m.name).head_commit)
            self.ledger.log_event("interrupted")
            report.stopped_by = "interrupted"
        else:
            report.stopped_by = self.budget.exhausted_by or "agents_done"
        report.wall_seconds = self.clock.now() - started
        report.slot_seconds = self.scheduler.busy_seconds
        self.ledger.log_event("run_stopped", stopped_by=report.stopped_by, experiments=report.ran,
                              utilization=round(report.utilization, 4), paused=report.paused)
        return report

    def _follow(self, limits: Limits) -> Callable[[], None]:
        """Keep the scheduler's slots in step with the cluster's nodes while the agents work."""
        if self.cluster is None:
            return lambda: None
        loop = asyncio.get_running_loop()

        def joined(slot: Any) -> None:
            hardware = slot.hardware()
            self.scheduler.add(slot)
            self.ledger.log_event("slot_joined", slot=slot.name, hardware=hardware)
            if hardware not in self.evidence.hardware_classes and not self.stopped:
                self._spawn(self.evidence.new_class(hardware, self.budget.left()))

        def left(slot: Any) -> None:
            self.scheduler.remove(slot)
            self.ledger.log_event("slot_left", slot=slot.name)

        return self.cluster.follow(lambda slot: loop.call_soon_threadsafe(joined, slot),
                                   lambda slot: loop.call_soon_threadsafe(left, slot))

    def _tasks_besides_loops(self) -> bool:
        """Whether anything runs besides the agents' loops (an experiment's life, a merge a lead started), a lead
        acts, or a submitting agent works: something that can still bring news."""
        return bool(self._tasks - self._loops) or any(
            m.acting for m in self.members.values()) or any(
            not (m.waiting or m.done or m.paused) for m in self.members.values() if m.role.submits)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # an agent's loops ---------------------------------------------------------------------
    async def _researcher(self, member: Member) -> None:
        """A submitting agent: propose while up to `in_flight` of its experiments run."""
        places = asyncio.Semaphore(member.role.in_flight)
        lives: set[asyncio.Task] = set()  # its experiments still running (a finished one leaves: memory stays flat)
        try:
            while not self.stopped and not member.paused:
                await places.acquire()
                if self.stopped or member.paused or self._at_cap(member) or not self.budget.available() or \
                        self._saving_for_gate(member) or (
                        member.role.waits_for_assignment and not await self._wait_for_assignment(member)):
                    places.release()
                    break
                cost = self.policy.screen  # a proposal trains for this fraction of the budget
                if not self.budget.reserve(cost):  # spent while it waited: the assignment waits for a later run
                    self.team.give_back(member)
                    places.release()
                    break
                try:
                    submitted = await self._submit(member)
                except Exception as err:  # a failing agent is paused; the organization goes on
                    self.budget.settle(counted=False, cost=cost)
                    places.release()
                    await self._pause(member, err)
                    break
                if submitted is None:
                    self.budget.settle(counted=False, cost=cost)
                    places.release()
                    break
                life = self._spawn(self._life(member, *submitted, places))
                lives.add(life)
                life.add_done_callback(lives.discard)
            await asyncio.gather(*lives)
            await self._last_gate(member)
        finally:
            member.done = True
            self.team.wake_leads()  # a lead whose researchers are all gone may be done too

    async def _lead(self, member: Member) -> None:
        """A role that runs no experiment (a chief): it acts at the start and whenever it has news. When every
        submitting agent has stopped it gets one last turn if news came since it last acted (the final reports),
        so it can still merge what the researchers finished."""
        seen = None
        while not self.stopped and not member.paused:
            if member.mail == seen:
                if self._winding_down:
                    return
                member.wake.clear()
                await member.wake.wait()
                continue
            seen = member.mail
            member.acting = True
            try:
                await self.clock.sleep(member.role.think_seconds, self._stop)
                await self._call(member, member.agent.act, member.ctx)
            except Exception as err:  # a failing lead is paused; the others go on
                await self._pause(member, err)
                return
            finally:
                member.acting = False
            if member.mail == seen and not self._tasks_besides_loops():
                self.team.release_idle(member)  # it gave its idle researchers nothing, and nothing else can happen

    async def _wait_for_assignment(self, member: Member) -> bool:
        """Wait until an assignment for this agent arrives (its lead knows it is idle); False if the run stops
        or no lead is left."""
        while not self.stopped:
            if self.team.take_assignment(member):
                return True
            if member.released or not self.team.wait_for_lead(member):
                return False
            member.wake.clear()
            await member.wake.wait()
        return False

    def _at_cap(self, member: Member) -> bool:
        cap = member.role.max_experiments
        return cap is not None and self.ledger.count(agent=member.name, exclude=("interrupted",)) >= cap

    async def _call(self, member: Member, method: Callable, *args: Any) -> Any:
        """Call an agent: in the loop if it answers at once, else in a thread (the loop goes on meanwhile)."""
        if not member.blocking:
            return method(*args)
        return await asyncio.get_running_loop().run_in_executor(None, method, *args)

    # one experiment's life ----------------------------------------------------------------------
    async def _submit(self, member: Member) -> tuple[Experiment, str | None] | None:
        """Ask the agent for a proposal, commit it beside its branch and record it; None if it has none."""
        async with member.workspace:  # its worktree is the agent's alone while it proposes
            return await self._propose(member)

    async def _propose(self, member: Member) -> tuple[Experiment, str | None] | None:
        self._adopt_program(member)
        await self.clock.sleep(member.role.think_seconds, self._stop)
        if self.stopped:
            return None
        proposal = await self._call(member, member.agent.propose, member.ctx)
        if proposal is None or self.stopped:
            return None
        if member.ctx.assignment is not None:
            assignment, member.ctx.assignment = member.ctx.assignment, None
            proposal.data = {**proposal.data, "assignment": assignment.id, "assigned_by": assignment.sender}
        parent = self.ledger.agent(member.name).head_commit
        message = _commit_message(member.name, proposal.description, proposal.hypothesis)
        commit, invalid = self.world.commit(member.name, parent, proposal.files, message)
        if member.role.in_flight > 1:
            self.world.reset(member.name, parent)  # the worktree goes back to the head for the next proposal
        tree = self.world.tree_of(commit)
        experiment = self.ledger.start_experiment(
            member.name, parent, commit, diff=self.world.diff(parent, commit), description=proposal.description,
            hypothesis=proposal.hypothesis, proposal=proposal.data, seed=self._first_seed(tree),
            log_dir=self.world.logs_dir, tree=tree, fidelity=self.policy.screen)
        self.world.label(experiment.id, commit)
        return experiment, invalid

    def _first_seed(self, tree: str) -> int:
        """A code's first run takes the task's seed; code that already ran with it (a replay, a merge many agents
        made) takes a fresh one, since the same code with the same seed would measure nothing new."""
        used = self.ledger.seeds_of(tree)
        return self.task.seed if self.task.seed not in used else fresh_seed(self.task.seed, used)

    async def _life(self, member: Member, experiment: Experiment, invalid: str | None,
                    places: asyncio.Semaphore) -> None:
        try:
            experiment = await self._run_and_decide(member, experiment, invalid, self._incumbent(member, experiment))
        except Exception as err:  # the lab itself failed (git, disk): record it, pause the agent
            await self._pause(member, err, experiment)
        finally:
            self.budget.settle(counted=self.ledger.experiment(experiment.id).status != "interrupted",
                               cost=experiment.fidelity)
            places.release()

    async def _run_and_decide(self, member: Member, experiment: Experiment, invalid: str | None,
                              incumbent: Callable[[], str]) -> Experiment:
        invalid = invalid or self.world.guard(experiment.parent_commit, experiment.commit)
        if invalid:
            return await self._finish(member, experiment, "invalid", invalid, None, {})
        result, hardware, experiment = await self.measure(member.name, member.role.priority, experiment)
        status, summary = result.status, result.summary
        if status == "ok":
            decision = await self.evidence.decide(member.name, experiment, hardware, result.metric, summary,
                                                  incumbent)
            if decision is None:  # runs again after a resume, against the floor
                return await self._finish(member, experiment, "interrupted", "stopped before the noise floor it is "
                                          "judged against was measured", None, summary)
            status, summary = ("keep" if decision.keep else "discard"), {**summary, "decision": decision.evidence}
        return await self._finish(member, experiment, status, result.reason, result.metric, summary)

    async def measure(self, agent: str, priority: float, experiment: Experiment,
                      hardware: str | None = None) -> tuple[RunResult, str, Experiment]:
        """Run an experiment's code once on a slot (of `hardware` class, if given): its result, the hardware
        class it ran on, and the experiment that holds the result (a new one if its slot vanished mid-run)."""
        while True:
            slot = await self.scheduler.acquire(agent, priority, hardware)
            if slot is None:
                reason = "stopped before it ran (Ctrl-C or a signal)" if self.stopped \
                    else f"no slot of hardware class {hardware}"
                return RunResult("interrupted", reason=reason), hardware or "", experiment
            started, lost = self.clock.now(), False
            try:
                self.ledger.set_slot(experiment.id, slot.name, slot.hardware())
                self.on_event("experiment_started", {"experiment": experiment, "slot": slot.name})
                result = await self.world.run(slot, experiment, self.cancel)
                lost = result.status == LOST
            finally:
                held = self.clock.now() - started
                if lost:
                    self.scheduler.remove(slot)
                self.scheduler.release(slot, agent, held)
            if not lost:
                break
            experiment = self._run_again(experiment, slot, result.reason)
        self.on_event("run_ended", {"experiment": experiment, "status": result.status, "metric": result.metric})
        result.summary["slot_seconds"] = held  # the run's own time on the slot; its decision may take longer
        return result, slot.hardware(), experiment

    def _run_again(self, experiment: Experiment, slot: Any, reason: str) -> Experiment:
        """The slot vanished with the run: record it interrupted with why, and start the same code with the same
        seed again as a new experiment (it waits for another slot)."""
        self.ledger.finish_experiment(experiment.id, "interrupted", reason=reason)
        again = self.ledger.start_experiment(
            experiment.agent, experiment.parent_commit, experiment.commit, diff=experiment.diff,
            description=experiment.description, hypothesis=experiment.hypothesis, proposal=experiment.proposal,
            seed=experiment.seed, log_dir=self.world.logs_dir, kind=experiment.kind, rerun_of=experiment.rerun_of,
            tree=experiment.tree, fidelity=experiment.fidelity)
        self.world.label(again.id, again.commit)
        self.ledger.log_event("run_lost", experiment=experiment.id, slot=slot.name, again=again.id, reason=reason)
        self.on_event("run_lost", {"experiment": experiment, "again": again, "reason": reason})
        return again

    async def extra_runs(self, agent: str, code: Code, kind: str, n: int, hardware: str | None) -> list[Experiment]:
        """Run `code` n more times with fresh seeds (on its `fidelity` of the task's budget), at once on as many
        slots; each run takes its fidelity of the experiment budget (fewer runs when it runs out). Return the
        recorded runs."""
        used = self.ledger.seeds_of(code.tree)
        rows = []
        for _ in range(n):
            if self.stopped or not self.budget.reserve(code.fidelity):
                break
            seed = fresh_seed(self.task.seed, used)
            used.add(seed)
            rows.append(self.ledger.start_experiment(
                agent, code.parent, code.commit, diff="", description=code.description, hypothesis="",
                proposal={}, seed=seed, log_dir=self.world.logs_dir, kind=kind, rerun_of=code.source,
                tree=code.tree, fidelity=code.fidelity))
            self.world.label(rows[-1].id, code.commit)  # every run has its refs/experiments/<id>
        done = await asyncio.gather(*(self._extra_run(agent, row, hardware) for row in rows))
        return [e for e in done if e is not None]

    async def _extra_run(self, agent: str, row: Experiment, hardware: str | None) -> Experiment | None:
        counted, finished = False, None
        try:
            member = self.members.get(agent)
            priority = LAB_PRIORITY if agent == LAB else member.role.priority if member else 1.0
            result, _, row = await self.measure(agent, priority, row, hardware)
            finished = self.ledger.finish_experiment(row.id, "measured" if result.status == "ok" else result.status,
                                                     reason=result.reason, metric=result.metric,
                                                     summary=result.summary)
            counted = result.status != "interrupted"
        except Exception as err:  # the lab failed (git, disk): the run is recorded as a crash, the caller goes on
            self.ledger.finish_experiment(row.id, "crash", reason=f"the lab failed: {type(err).__name__}: {err}")
            counted = True
        finally:
            self.budget.settle(counted=counted, cost=row.fidelity)
        if finished is not None:  # recorded: what follows cannot change the record
            self.report.ran += 1
            self.written(finished)
        return finished

    async def _finish(self, member: Member, experiment: Experiment, status: str, reason: str,
                      metric: float | None, summary: dict[str, Any]) -> Experiment:
        async with member.workspace:
            head = self.ledger.agent(member.name).head_commit
            if status == "keep" and (experiment.kind != "merge" or head == experiment.proposal.get("source_commit")):
                head = experiment.commit  # keep moves the agent's branch (not back, for a merge of older work)
            done = self.ledger.finish_experiment(experiment.id, status, agent_head=head, reason=reason,
                                                 metric=metric, summary=summary)
            self.world.reset(member.name, head)
            member.agent.observe(member.ctx, done)
        self.report.ran += 1
        self.written(done)
        for process in self.processes:
            process.on_experiment(done)
        if self.merger is not None and (self._merge_process or done.kind == "merge"):
            if done.status == "keep":
                await self._announced_merge(member, done)
            elif done.kind != "merge" and self._merge_process and self.policy.gate is not None \
                    and self._gate_closing():
                head = self._ungated_head(member)  # the budget closes: the branch's last keep goes to the gate
                if head is not None and self.merger.is_candidate(head):
                    await self._announced_merge(member, head)
            else:
                await self._merge(member, done)
        if done.proposal.get("assignment"):
            report_assignment(self.post, done, self.task.metric)
        return done

    def written(self, done: Experiment) -> None:
        """A run was recorded: rewrite what the world keeps of the results, and tell the display; stop the run
        when the unchanged baseline cannot be measured (`_baseline_cannot_run`)."""
        self.world.written(done)
        if self.policy.matched:
            self.evidence.observe(done)
        self.on_event("experiment_finished", {"experiment": done})
        if self._unmeasurable is None and done.status in ("crash", "invalid", "timeout"):
            why = self._baseline_cannot_run(done)
            if why is not None:
                self._unmeasurable = LabError(why)
                self.cancel.set()
                self._stopping()

    def _baseline_cannot_run(self, done: Experiment) -> str | None:
        """Why the run must stop because the unchanged baseline, never measured on this program, failed: at
        once when its log never shows the metric (the task's metric does not match what the command prints),
        else when two runs of the noise floor failed the same way: every further run would fail alike."""
        baseline = self.world.tree_of(self.ledger.program().baseline_commit)
        if done.tree != baseline or self.ledger.runs_of(done.tree, fidelity=None):
            return None
        log = self.world.logs_dir / f"{done.id}.log" if self.world.logs_dir else None
        where = f"experiment #{done.id}" + (f", its log {log}" if log else "")
        if done.status == "crash" and (done.reason or "").startswith(f"no finite `{self.task.metric.name}`"):
            return (f"the baseline printed no `{self.task.metric.name}` ({where}): the task's metric does not match "
                    f"what `{self.task.command}` prints; fix [metric] name or pattern in task.toml")
        # the noise floor's runs only (the lab's own, of the code as it is): an agent's run may change the code;
        # the floor gives up after two failures, and none of its runs may have succeeded (checked above)
        cause = _cause(done.reason)
        alike = [e for e in self.ledger.experiments(status=done.status) if e.tree == baseline
                 and e.kind == "noise" and _cause(e.reason) == cause]
        if len(alike) < 2:
            return None
        return (f"the baseline failed {len(alike)} times alike, so every run would ({where}): "
                f"{(done.reason or done.status).splitlines()[0]}; {_fix(done.reason or '')}")

    def _incumbent(self, member: Member, experiment: Experiment) -> Callable[[], str]:
        """What a candidate of `member` must beat, asked at decision time: the commit its branch stands at
        (or, for a merge re-run, the program branch's)."""
        if experiment.kind == "merge":
            return self.world.main
        return lambda: self.ledger.agent(member.name).head_commit

    # adopting and merging -----------------------------------------------------------------------
    def _adopt_program(self, member: Member) -> None:
        """Move the agent onto the program branch when what it publishes beats the agent's own head."""
        if self.merger is None or not member.role.adopt_program:
            return
        main = self.merger.worth_adopting(self.ledger.agent(member.name).head_commit)
        if main is not None:
            self.ledger.set_agent_head(member.name, main)
            self.world.reset(member.name, main)
            self.ledger.log_event("adopted_program", agent=member.name, commit=main)

    async def _merge(self, member: Member, done: Experiment, by: str = "merge") -> str:
        """Verify and merge a kept experiment into the program branch if it beats the program's best; say what
        happened, and record it (the reports say why a kept run is not on main)."""
        outcome = await self._decide_merge(member, done, by)
        self.ledger.log_event("merge_decided", experiment=done.id, outcome=outcome)
        return outcome

    async def _decide_merge(self, member: Member, done: Experiment, by: str) -> str:
        if done.kind == "merge":
            accepted = self.merger.accept_rerun(done, done.proposal["merge_by"])
            return "merged after the re-run" if accepted else "not merged: the re-run did not beat the program's best"
        if not self.merger.is_candidate(done):
            best = self.merger.program_best()
            return f"not merged: #{done.id} does not beat main" + (f" ({best:.6g})" if best is not None else "")
        if self.policy.gate is not None:
            z = self._gate_z(done) if by == "merge" else math.inf  # a role's merge goes to the gate when it asks
            closing = self._gate_closing()
            if z < self.policy.gate_trigger and not closing:
                return (f"not yet at the gate: #{done.id}'s branch beats main by {z_text(z)}, below "
                        f"{self.policy.gate_trigger:g} (the branch goes on; it is gated when it gets there or "
                        "when the budget closes)")
            self._gated.add(done.id)
            if done.fidelity < 1.0 and by == "merge" and not closing:  # confirm on the short budget first
                await self.evidence.confirm(done)
                z = self._gate_z(done)
                if z < self.policy.gate_trigger:
                    return (f"not merged: with fresh runs on the screening budget #{done.id}'s branch beats main "
                            f"by {z_text(z)}, below {self.policy.gate_trigger:g}")
        if self.evidence.verify_runs:
            reproduced = await self.evidence.verify(done, member.role.name)
            if reproduced is None:
                self._gated.discard(done.id)  # not judged: the budget's last gate may try it again
            if not reproduced:
                return "not merged: " + ("it could not be verified in full (no budget left, Ctrl-C, no slot of "
                                         "its hardware class, or no run under main's machine load)"
                                         if reproduced is None
                                         else "it did not reproduce with fresh seeds")
            if not self.merger.is_candidate(done):  # its value now includes the fresh runs
                return f"not merged: with the fresh runs #{done.id} no longer beats the program's best"
        outcome, merged = self.merger.try_merge(done, by)
        if merged is None:
            return "merged" if outcome == "merged" else f"not merged: {outcome}"
        if not self.budget.reserve():
            return "not merged: the clean merge needs a re-run and the experiment budget is spent"
        rerun = None
        try:  # the clean merge of a moved branch is untested: run it before it can merge
            main = self.world.main()
            rerun = self.ledger.start_experiment(
                member.name, main, merged, diff=self.world.diff(main, merged),
                description=f"merge #{done.id} onto main",
                hypothesis="the kept change still wins on top of the moved program branch",
                proposal={"merge_of": done.id, "merge_by": by, "source_commit": done.commit},
                seed=self._first_seed(self.world.tree_of(merged)),
                log_dir=self.world.logs_dir, kind="merge", rerun_of=done.id, tree=self.world.tree_of(merged))
            self.world.label(rerun.id, merged)
            rerun = await self._run_and_decide(member, rerun, None, self.world.main)
        except Exception as err:  # the lab failed: the re-run is a crash, and the merge does not happen
            if rerun is not None and self.ledger.experiment(rerun.id).status == "running":
                self.ledger.finish_experiment(rerun.id, "crash", reason=f"the lab failed: {type(err).__name__}: {err}")
            raise
        finally:
            self.budget.settle(counted=rerun is not None and self.ledger.experiment(rerun.id).status != "interrupted")
        merged_now = any(m.experiment_id == rerun.id for m in self.ledger.merges()[-1:])
        return f"re-run as #{rerun.id} on top of the moved program branch: " + ("merged" if merged_now
                                                                                  else "not merged")

    def _gate_z(self, done: Experiment) -> float:
        """How far the kept code `done` beats main on the runs so far, in standard errors (explore-gate), on the
        budget `done` ran on (screen-gate: its runs and main's on the screening budget)."""
        head = self.ledger.runs_of(done.tree, done.hardware, done.fidelity)
        main = self.ledger.runs_of(self.world.tree_of(self.world.main()), done.hardware, done.fidelity)
        level = None
        if self.policy.matched:  # both at the lighter of their lightest loads
            level, tolerance = min(lightest(head), lightest(main)), self.org.rigor.load_tolerance
            head, main = at_load(head, level, tolerance), at_load(main, level, tolerance)
        head = code_sample((e.kind, e.metric) for e in head)
        main = code_sample((e.kind, e.metric) for e in main)
        sigma, dof = self.evidence.sigma(done.hardware, level, done.fidelity)
        return self.policy.at_gate(self.task.metric, head, main, sigma, dof)

    def _gate_closing(self) -> bool:
        """Whether the budget is about to close: what is left pays for little more than each agent's last gate."""
        agents = sum(1 for m in self.members.values() if m.role.submits) or 1
        return self.budget.nearly_spent((self.evidence.verify_runs + 2) * agents, self.scheduler.mean_run_seconds,
                                        len(self.scheduler.live()))

    def _saving_for_gate(self, member: Member) -> bool:
        """Whether the agent should propose no more: the budget is closing and its branch has a keep that beats
        main and waits for the gate, which the rest of the budget can still pay for."""
        if self.policy.gate is None or not self._merge_process or not self._gate_closing() \
                or not self._gate_affordable():
            return False
        head = self._ungated_head(member)
        return head is not None and self.merger.is_candidate(head)

    def _gate_affordable(self) -> bool:
        """Whether the experiment budget still pays for a gate's fresh runs (True without such a limit)."""
        left = self.budget.left()
        return left is None or left >= self.evidence.verify_runs

    async def _last_gate(self, member: Member) -> None:
        """An agent stopped (its budget, its cap, nothing left to propose): its branch's last keep that beats
        main goes to the gate now, rather than staying off main."""
        if self.policy.gate is None or not self._merge_process or self.stopped or member.paused \
                or not self._gate_affordable():
            return
        head = self._ungated_head(member)
        if head is not None and self.merger.is_candidate(head):
            try:
                await self._announced_merge(member, head)
            except Exception as err:  # the lab failed (git, disk): the agent is paused, as in an experiment's life
                await self._pause(member, err)

    def _ungated_head(self, member: Member) -> Experiment | None:
        """The kept proposal the agent's branch stands on, if no gate has judged it yet."""
        head = self.ledger.agent(member.name).head_commit
        for e in reversed(self.ledger.experiments(agent=member.name, status="keep")):
            if e.commit == head and e.kind == "proposal":
                return None if e.id in self._gated else e
        return None

    def _resume_merges(self, members: list[Member]) -> None:
        """A kept change whose verification or merge a stopped run cut off (the agent's branch stands on it, and
        nothing verified or merged it): verify and merge it now, as the merge process would have."""
        if self.merger is None or not self._merge_process:
            return
        settled = {v.experiment_id for v in self.ledger.verifications()} | {m.experiment_id
                                                                           for m in self.ledger.merges()}
        for member in members:
            head = self.ledger.agent(member.name).head_commit
            kept = [e for e in self.ledger.experiments(agent=member.name, status="keep")
                    if e.commit == head and e.kind == "proposal" and e.id not in settled]
            for experiment in kept[-1:]:
                self._spawn(self._resumed_merge(member, experiment))

    async def _resumed_merge(self, member: Member, experiment: Experiment) -> None:
        try:
            await self._announced_merge(member, experiment)
        except Exception as err:  # the lab failed (git, disk): the agent is paused, as in an experiment's life
            await self._pause(member, err)

    async def _announced_merge(self, member: Member, experiment: Experiment) -> None:
        outcome = await self._merge(member, experiment)
        self.on_event("merge_decided", {"experiment": experiment, "outcome": outcome})

    def _merge_on_request(self, member: Member, experiment_id: int) -> str:
        """The `merge` tool of a role allowed to merge: from the agent's thread, the merge runs in the loop and
        the agent waits for its outcome; from an agent in the loop, it starts and the agent goes on."""
        try:
            experiment = self.ledger.experiment(int(experiment_id))
        except Exception:
            return f"no experiment #{experiment_id}"
        if experiment.status != "keep":
            return f"not merged: #{experiment.id} was not kept ({experiment.status})"
        owner = self.members.get(experiment.agent)
        if owner is None:
            return f"not merged: #{experiment.id} belongs to {experiment.agent}, who is not in this org"
        if not member.blocking:
            self._spawn(self._merge(owner, experiment, by=member.name))
            return f"merging #{experiment.id}"
        return asyncio.run_coroutine_threadsafe(self._merge(owner, experiment, by=member.name), self._loop).result()

    # pausing, interruption and recovery ----------------------------------------------------------------
    async def _pause(self, member: Member, err: Exception, experiment: Experiment | None = None) -> None:
        reason = f"{type(err).__name__}: {err}"
        member.paused = True
        if experiment is not None and self.ledger.experiment(experiment.id).status == "running":
            self.ledger.finish_experiment(experiment.id, "crash", reason=f"the lab failed: {reason}")
        async with member.workspace:
            self.world.reset(member.name, self.ledger.agent(member.name).head_commit)
        self.ledger.log_event("agent_paused", agent=member.name, reason=reason, traceback=traceback.format_exc())
        self.report.paused[member.name] = reason
        self.on_event("agent_paused", {"agent": member.name, "reason": reason})
        self.team.wake_all()  # researchers waiting on a paused lead find another one, or stop

    def recover(self) -> list[Experiment]:
        """Settle what a run that died left behind; return the experiments recorded as interrupted."""
        settled = []
        for experiment in self.ledger.experiments(status="running"):
            self.world.kill_orphan(experiment)
            self.ledger.finish_experiment(experiment.id, "interrupted",
                                          reason="the run process stopped before this experiment finished")
            settled.append(experiment)
        for agent in self.ledger.agents():
            self.world.reset(agent.name, agent.head_commit)
        if settled:
            self.ledger.log_event("recovered", interrupted=[e.id for e in settled])
            self.world.written(settled[-1])
        return settled

    def _members(self) -> list[Member]:
        """Every agent of the org, with its place in the world and its backend; a backend that cannot start
        fails here, before anything runs."""
        members = []
        for index, (name, role) in enumerate(self.org.agent_names()):
            worktree = self.world.ensure_agent(name, role.name, role.backend)
            self.post.worktrees[name] = worktree
            ctx = AgentContext(name, self.task, worktree, self.world.agent_dir(name), self.ledger, role=role,
                               stop=self.cancel, post=self.post,
                               files=lambda path, commit=None, n=name: self.world.read(n, path, commit),
                               main=self.world.main, idle=lambda n=name: self.team.idle(n))
            agent = make_agent(role, ctx, index=index + self.seed_offset)
            blocking = getattr(agent, "blocking", True)
            if not role.submits and not hasattr(agent, "act"):
                raise ConfigError(f"roles.{role.name}: submits = false makes it a lead, and the {role.backend!r} "
                                  "backend cannot lead; use an LLM or the simulated backend")
            if blocking and self.clock.virtual:
                raise ConfigError(f"roles.{role.name}: the {role.backend!r} backend takes real time, and this world "
                                  "runs in virtual time; use the simulated backend")
            member = Member(name, role, ctx, agent, blocking)
            if role.merges:
                ctx.merge = lambda experiment_id, m=member: self._merge_on_request(m, experiment_id)
            members.append(member)
            self.team.add(member)
        self.team.start(self.ledger)
        for member in members:
            self.post.mirror(member.name)
        return members


def _shielded(handler: EventHandler, ledger: Any) -> EventHandler:
    """A display's event handler that cannot fail the run: an error in it is logged once, and the run goes on
    (what the ledger records never depends on what a display does)."""
    failed = []

    def call(kind: str, data: dict[str, Any]) -> None:
        try:
            handler(kind, data)
        except Exception as err:
            if not failed:
                failed.append(err)
                ledger.log_event("display_failed", event=kind, error=f"{type(err).__name__}: {err}",
                                 traceback=traceback.format_exc())
    return call


def _commit_message(agent: str, description: str, hypothesis: str) -> str:
    body = f"\n\n{hypothesis}" if hypothesis else ""
    return f"{description}{body}\n\nagent: {agent}"
