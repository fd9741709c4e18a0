"""The incident playbooks' settings: host.data keys with their defaults (override: `--data key=value`)."""

DEFAULTS = {
    # --- failover ---
    "failover_force": False,  # activate although the primary cannot be fenced nor shown gone by the witness
    "failover_activation_wait": 300,  # seconds wirebot.activation may take to reach ACTIVE
    # --- both: verification through the public endpoint ---
    "incident_verify_seconds": 60,  # how long the public endpoint may take to be served by the new side
    "incident_verify_probes": 3,  # consecutive requests that must all be served by the expected side
    # --- recovery ---
    "recovery_stop_after": 0,  # stop after recovery step K (1-7) as if interrupted; 0 = run to the end
}


def get(data, key):
    """host.data[key], or its default above (pyinfra's --data parses true/false and numbers)."""
    value = data.get(key)
    return DEFAULTS[key] if value is None else value


def flag(data, key) -> bool:
    """A boolean setting; accepts true/false, 1/0, yes/no (as strings too)."""
    value = get(data, key)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
