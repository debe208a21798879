"""Worlds the engine runs in (protocol.py): the real one, git and subprocesses on slots (real.py, program.py,
git.py, guard.py, runner.py, slots.py, grid.py), and the simulated one (simulated.py); and their clocks (clock.py)."""
