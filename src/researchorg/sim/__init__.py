"""Simulation: a hidden landscape of ideas with known truth (landscape.py), the simulated agents that draw
from it (ideas.py), and a virtual lab that runs organizations in virtual time (virtual.py)."""
