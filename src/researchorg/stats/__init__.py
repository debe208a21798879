"""Pure statistics: what a code scores (score.py), the noise floor (noise.py), acceptance policies
(acceptance.py) and confounds (confounds.py). Imports nothing of researchorg but the specs."""
