"""The simulated task's protected harness: measure the ideas in ideas.py on the hidden landscape.

It reads ideas.py as text (agent code never runs), takes the run's seed from
RESEARCHORG_SEED and the fraction of the budget it trains for from
RESEARCHORG_BUDGET (a screening run), and prints the metric and the summary
block the lab reads.
A simulated crash exits with status 1.
"""

import os
import re
import sys
import tomllib
from pathlib import Path

from researchorg.harness.landscape import Landscape

here = Path(__file__).parent
params = tomllib.loads((here / "landscape.toml").read_text())
landscape = Landscape(**params)
text = (here / "ideas.py").read_text()
config = frozenset(m.group(1) for m in re.finditer(r"(?m)^(IDEA_\d+)\s*=\s*1\b", text))
seed = int(os.environ.get("RESEARCHORG_SEED", "0"))
# a screening run trains for a fraction of the task's budget: the lab says so through RESEARCHORG_BUDGET
full = tomllib.loads((here / "task.toml").read_text())["budget_seconds"]
fidelity = min(float(os.environ.get("RESEARCHORG_BUDGET", full)) / full, 1.0)
outcome = landscape.run(config, seed, fidelity=fidelity)
print(f"ideas: {', '.join(sorted(config)) or 'none'} (seed {seed})")
if outcome.metric is None:
    print(f"simulated crash after {outcome.seconds:.0f} s of training", file=sys.stderr)
    sys.exit(1)
print("---")
print(f"loss:             {outcome.metric!r}")  # every digit: the simulated world sees the same number
print(f"training_seconds: {outcome.seconds!r}")
print(f"num_ideas:        {len(config)}")
