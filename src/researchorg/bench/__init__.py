"""The benchmark of organizations (spec.py, run.py, real.py, measures.py, report.py) and ablation (ablation.py):
experiment plans the engine runs, measured from the ledger."""
