"""The pieces behind ``tasks/hetzner.py``: settings, preflight, Hetzner resources and error messages.

Split out only to keep each module short; ``tasks/hetzner.py`` is the command and the entry point.
"""
