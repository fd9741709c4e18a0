"""Shared test setup. `tasks`, `lab` and `wirebot` come from the install (`pip install -e '.[test]'`,
pyproject.toml), nothing edits sys.path; pytest puts tests/ itself on it (this conftest's folder)."""
