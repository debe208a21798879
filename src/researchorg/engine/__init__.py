"""The engine: the rules of an organization, written once for every world (runtime.py, and the evidence, merging,
processes, coordination, messages and scheduler it runs)."""
