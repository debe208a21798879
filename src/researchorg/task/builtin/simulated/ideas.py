"""The simulated task's editable code: each idea is in (1) or out (0).

A simulated agent adds an idea by setting its line to 1; the protected harness
reads this file as text (it never imports it) and measures the set of ideas on
the hidden landscape (landscape.toml). Even ideas stand for knobs, odd ones for code changes. A blank line
keeps each idea apart from the next, so that git merges changes of different ideas without a conflict.
"""

IDEA_00 = 0  # knob

IDEA_01 = 0  # code

IDEA_02 = 0  # knob

IDEA_03 = 0  # code

IDEA_04 = 0  # knob

IDEA_05 = 0  # code

IDEA_06 = 0  # knob

IDEA_07 = 0  # code

IDEA_08 = 0  # knob

IDEA_09 = 0  # code

IDEA_10 = 0  # knob

IDEA_11 = 0  # code

IDEA_12 = 0  # knob

IDEA_13 = 0  # code

IDEA_14 = 0  # knob

IDEA_15 = 0  # code

IDEA_16 = 0  # knob

IDEA_17 = 0  # code

IDEA_18 = 0  # knob

IDEA_19 = 0  # code

IDEA_20 = 0  # knob

IDEA_21 = 0  # code

IDEA_22 = 0  # knob

IDEA_23 = 0  # code

IDEA_24 = 0  # knob

IDEA_25 = 0  # code

IDEA_26 = 0  # knob

IDEA_27 = 0  # code

IDEA_28 = 0  # knob

IDEA_29 = 0  # code

IDEA_30 = 0  # knob

IDEA_31 = 0  # code

IDEA_32 = 0  # knob

IDEA_33 = 0  # code

IDEA_34 = 0  # knob

IDEA_35 = 0  # code

IDEA_36 = 0  # knob

IDEA_37 = 0  # code

IDEA_38 = 0  # knob

IDEA_39 = 0  # code
