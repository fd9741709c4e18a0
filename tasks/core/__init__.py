"""The shared core of the control side: what provision, the playbooks, the drills and the lab all import
instead of redefining (wait.py: the one polling helper)."""
