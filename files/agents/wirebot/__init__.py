"""Wirebot host agents, run with the system Python (standard library only)."""
