"""What runs inside a training process: the protected harness's building blocks (protected.py), the guest
watch (guest.py) and the simulated task's hidden landscape (landscape.py). Imports nothing of researchorg."""
