"""Rigor: how results are judged (acceptance policies)."""
