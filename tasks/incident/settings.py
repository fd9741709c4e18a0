"""The incident playbooks' settings: host.data keys with their defaults (override: `--data key=value`)."""

DEFAULTS = {
    # --- failover ---
    "failover_force": False,  # activate although the primary cannot be fenced nor shown gone by the witness
    "failover_activation_wait": 300,  # seconds wirebot.activation may take to reach ACTIVE
    "failover_witness_wait": 30,  # seconds to wait for an unreachable primary's connector to leave the API
    # --- both: verification through the public endpoint ---
    "incident_verify_seconds": 60,  # how long the public endpoint may take to be served by the new side
    "incident_verify_probes": 3,  # consecutive requests that must all be served by the expected side
    # --- recovery ---
    "recovery_stop_after": 0,  # stop after recovery step K (1-7) as if interrupted; 0 = run to the end
    "recovery_skip_dbs": [],  # DBs (relative to wirebot_data_root) whose standby writes are NOT merged
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


def paths(data, key) -> list:
    """A list setting: a list, or a comma-separated string (`--data recovery_skip_dbs=a.db,b.db`)."""
    value = get(data, key)
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip().strip("/") for item in value or [] if str(item).strip()]
