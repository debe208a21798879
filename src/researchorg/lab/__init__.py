"""The lab: program repository and worktrees (program.py), git (git.py), the guard and the runner."""
