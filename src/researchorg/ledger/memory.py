"""The in-memory ledger: the storage protocol held in Python lists and indexes, for simulations in virtual time.

It answers every query the SQL store answers, the same way, with the indexes a
simulation of a thousand agents needs (runs by code, experiments by agent,
everything by id). Nothing survives the process: copy it into a SQL ledger
(`SqlLedger.copy_from`) to keep it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from researchorg.errors import LabError
from researchorg.ledger import records as r
from researchorg.ledger.protocol import final_status, number


class MemoryLedger:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._program: r.Program | None = None
        self._agents: dict[str, r.Agent] = {}
        self._experiments: list[r.Experiment] = []  # experiment id - 1
        self._by_agent: dict[str, list[int]] = {}
        self._by_tree: dict[str, list[int]] = {}
        self._merges: list[r.Merge] = []
        self._noise: list[r.NoiseFloor] = []
        self._verifications: list[r.Verification] = []
        self._usage: list[tuple[str, int, int, float, float]] = []  # agent, tokens in and out, USD, time
        self._submissions: list[r.Submission] = []
        self._taken: set[int] = set()
        self._messages: list[r.Message] = []
        self._events: list[r.Event] = []

    def close(self) -> None:
        """Nothing to release."""

    # programs and agents ------------------------------------------------------
    def create_program(self, name: str, task: str, metric: str, direction: str, baseline: str,
                       protected_hashes: dict[str, str]) -> int:
        self._program = r.Program(1, name, task, metric, direction, baseline, dict(protected_hashes), self.clock())
        return 1

    def program(self) -> r.Program:
        if self._program is None:
            raise LabError("the ledger holds no program")
        return self._program

    def ensure_agent(self, name: str, role: str, backend: str, branch: str, worktree: str, head: str) -> r.Agent:
        if name not in self._agents:
            self._agents[name] = r.Agent(len(self._agents) + 1, name, role, backend, branch, worktree, head,
                                         self.clock())
            self._by_agent[name] = []
        return self._agents[name]

    def set_agent_head(self, name: str, commit: str) -> None:
        self._agents[name] = dataclasses.replace(self._agents[name], head_commit=commit)

    def agents(self) -> list[r.Agent]:
        return list(self._agents.values())

    def agent(self, name: str) -> r.Agent:
        return self._agents[name]

    # experiments --------------------------------------------------------------
    def start_experiment(self, agent: str, parent_commit: str, commit: str, *, diff: str, description: str,
                         hypothesis: str, proposal: dict[str, Any], seed: int, log_dir: Path | None,
                         kind: str = "proposal", rerun_of: int | None = None, tree: str = "",
                         fidelity: float = 1.0) -> r.Experiment:
        new_id = len(self._experiments) + 1
        if agent not in self._agents:
            raise LabError(f"no agent named {agent!r} in the ledger")
        experiment = r.Experiment(
            new_id, agent, parent_commit, commit, "running", description, hypothesis, diff, proposal,
            seed=seed, started_at=self.clock(), kind=kind, rerun_of=rerun_of, tree=tree, fidelity=fidelity,
            log_path=str(log_dir / f"{new_id:05d}.log") if log_dir is not None else "")
        self._experiments.append(experiment)
        self._by_agent[agent].append(new_id)
        self._by_tree.setdefault(tree, []).append(new_id)
        return experiment

    def _update(self, experiment_id: int, **changes: Any) -> r.Experiment:
        experiment = dataclasses.replace(self._experiments[experiment_id - 1], **changes)
        self._experiments[experiment_id - 1] = experiment
        return experiment

    def set_slot(self, experiment_id: int, slot: str, hardware: str) -> None:
        self._update(experiment_id, slot=slot, hardware=hardware, started_at=self.clock())

    def set_pid(self, experiment_id: int, pid: int | None) -> None:
        self._update(experiment_id, pid=pid)

    def finish_experiment(self, experiment_id: int, status: str, *, agent_head: str | None = None, reason: str = "",
                          metric: float | None = None, summary: dict[str, Any] | None = None) -> r.Experiment:
        final_status(status)
        summary = summary or {}
        done = self._update(experiment_id, status=status, reason=reason, metric=metric, summary=summary, pid=None,
                            ended_at=self.clock(), peak_mem_mb=number(summary.get("peak_mem_mb")),
                            training_seconds=number(summary.get("training_seconds")),
                            total_seconds=number(summary.get("total_seconds")))
        if agent_head is not None:
            self.set_agent_head(done.agent, agent_head)
        return done

    def experiments(self, agent: str | None = None, status: str | None = None, kind: str | None = None,
                    after: int = 0, diff_chars: int | None = None, limit: int | None = None) -> list[r.Experiment]:
        if agent is not None:
            found = [self._experiments[i - 1] for i in self._by_agent.get(agent, ()) if i > after]
        else:
            found = self._experiments[after:]
        chosen = (e for e in found if (status is None or e.status == status) and (kind is None or e.kind == kind))
        return list(itertools.islice(chosen, limit))

    def experiment(self, experiment_id: int) -> r.Experiment:
        if not 0 < experiment_id <= len(self._experiments):
            raise LabError(f"no experiment #{experiment_id}")
        return self._experiments[experiment_id - 1]

    def count(self, agent: str | None = None, exclude: tuple[str, ...] = ()) -> int:
        found = self.experiments(agent=agent) if agent is not None else self._experiments
        return sum(e.status not in exclude for e in found)

    def spent(self, exclude: tuple[str, ...] = ()) -> float:
        return math.fsum(e.fidelity for e in self._experiments if e.status not in exclude)

    def runs_of(self, tree: str, hardware: str | None = None, fidelity: float | None = 1.0) -> list[r.Experiment]:
        runs = (self._experiments[i - 1] for i in self._by_tree.get(tree, ()))
        return [e for e in runs if e.status in r.FINISHED_OK and (hardware is None or e.hardware == hardware)
                and (fidelity is None or e.fidelity == fidelity)]

    def seeds_of(self, tree: str) -> set[int]:
        return {self._experiments[i - 1].seed for i in self._by_tree.get(tree, ())}

    # merges, the noise floor and verifications --------------------------------------
    def record_merge(self, experiment_id: int, agent: str, by: str, how: str, before: str, after: str,
                     metric: float) -> None:
        self._merges.append(r.Merge(len(self._merges) + 1, self.clock(), experiment_id, agent, by, how, before, after,
                                    metric))

    def merges(self) -> list[r.Merge]:
        return list(self._merges)

    def record_noise(self, hardware: str, commit: str, runs: list[int], mean: float, sigma: float,
                     sigma_low: float, sigma_high: float) -> None:
        self._noise.append(r.NoiseFloor(len(self._noise) + 1, self.clock(), hardware, commit, list(runs), mean, sigma,
                                        sigma_low, sigma_high))

    def noise_floor(self, hardware: str | None = None) -> r.NoiseFloor | None:
        return next((n for n in reversed(self._noise) if hardware is None or n.hardware == hardware), None)

    def noise_floors(self) -> list[r.NoiseFloor]:
        return list(self._noise)

    def record_verification(self, experiment_id: int, agent: str, role: str, runs: list[int], mean: float | None,
                            claimed: float, incumbent: float | None, reproduced: bool) -> None:
        self._verifications.append(r.Verification(len(self._verifications) + 1, self.clock(), experiment_id, agent,
                                                  role, list(runs), mean, claimed, incumbent, reproduced))

    def verifications(self) -> list[r.Verification]:
        return list(self._verifications)

    def reproduction(self, by: str = "agent") -> dict[str, tuple[int, int]]:
        verified: Counter[str] = Counter()
        reproduced: Counter[str] = Counter()
        for v in self._verifications:
            key = v.agent if by == "agent" else v.role
            verified[key] += 1
            reproduced[key] += v.reproduced
        return {key: (reproduced[key], verified[key]) for key in sorted(verified)}

    # LLM usage and submissions ----------------------------------------------------
    def record_usage(self, agent: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        self._usage.append((agent, input_tokens, output_tokens, cost_usd, self.clock()))

    def usage(self, agent: str | None = None) -> r.Usage:
        rows = [u for u in self._usage if agent is None or u[0] == agent]
        return r.Usage(sum(u[1] for u in rows), sum(u[2] for u in rows), sum(u[3] for u in rows), len(rows))

    def add_submission(self, agent: str, description: str, hypothesis: str = "") -> int:
        self._submissions.append(r.Submission(len(self._submissions) + 1, self.clock(), agent, description,
                                              hypothesis))
        return len(self._submissions)

    def take_submission(self, agent: str) -> r.Submission | None:
        for s in self._submissions:
            if s.agent == agent and s.id not in self._taken:
                self._taken.add(s.id)
                return s
        return None

    # messages and events ------------------------------------------------------------
    def send(self, sender: str, recipient: str | None, kind: str, body: str, experiment_id: int | None = None,
             data: dict[str, Any] | None = None) -> r.Message:
        message = r.Message(len(self._messages) + 1, self.clock(), sender, recipient, kind, body, experiment_id,
                            data or {})
        self._messages.append(message)
        return message

    def messages(self, for_agent: str | None = None, limit: int | None = None, after: int = 0,
                 kind: str | None = None) -> list[r.Message]:
        found = []
        for m in reversed(self._messages[after:]):
            if limit is not None and len(found) >= limit:
                break
            if (kind is None or m.kind == kind) and (for_agent is None or m.recipient in (None, for_agent)
                                                     or m.sender == for_agent):
                found.append(m)
        return found[::-1]

    def log_event(self, kind: str, **data: Any) -> None:
        self._events.append(r.Event(len(self._events) + 1, self.clock(), kind, json.loads(json.dumps(data,
                                                                                                  default=str))))

    def events(self, after: int = 0) -> list[r.Event]:
        return [e for e in self._events if e.id > after]
