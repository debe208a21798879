"""tinylm's entry point: run train.py under watch and the budget, then compute val_bpb itself.

PROTECTED, like prepare.py. The lab runs `python harness.py`; it

1. reads prepare.py (this process's own copy, before any training code runs),
   then runs train.py as a watched guest (researchorg.harness.guest) in its
   sandbox (harness/sandbox.py: the validation split is not in its view) with
   the run's seed. The budget counts training only: start-up and the hand-off
   have their own allowances (harness/timeline.py), and the guest is killed at
   the deadline of its phase; writing outside the run's files or to a protected file,
   reseeding and printing a val_bpb line make the run invalid;
2. loads the model train.py saved (a torch.export graph: no code of train.py
   runs here), checks that it does not look ahead, and scores the fixed
   validation bytes;
3. measures the confounds: parameters (from the saved weights), training
   wall time and peak memory (of the guest process, measured from outside),
   steps and tokens (as train.py reports them), FLOPs = 6 x params x tokens;
4. writes its verdict where the lab reads it (RESEARCHORG_RESULT).
"""

import prepare  # no torch at import: read before the guest starts, so no training code can have changed it

from researchorg.harness.lm import main

if __name__ == "__main__":
    main(prepare, __file__)
