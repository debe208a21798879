"""What runs inside and around a training process: the kernel sandbox (sandbox.py, confine.py), the protected
harness's building blocks (protected.py), the guest watch (guest.py) and the simulated task's hidden landscape
(landscape.py). Imports nothing of researchorg outside this package."""
