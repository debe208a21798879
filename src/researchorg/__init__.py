"""researchorg: program a research organization of AI agents and measure it.

The nouns: a Task (what is researched), a Program (the git repository where an
organization works on a task), an Agent (proposes changes), an Experiment (one
change, one run, one result), the Ledger (where every experiment is recorded).
"""

__version__ = "0.1.0"
