"""The organization at run time: agents taking turns on the lab (runtime.py)."""
