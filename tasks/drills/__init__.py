"""The fire drill's parts that need no hosts (tasks/drill.py wires them to the hosts).

- surface.py: a synthetic local-first surface (seed section 3: local SQLite store, UUID v4 events,
  sync queue, capped exponential backoff) that runs in a background thread through the whole drill;
- report.py: the verdict (set comparison), the JSON line, the human summary and the Discord message;
- settings.py: the drill's settings (`drill_*` host data keys), their defaults and meaning;
- timer.py: the systemd service + timer of the scheduled drill (CLI: tasks/drill_timer.py).
"""
