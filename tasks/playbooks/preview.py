"""The recovery's preview, at prepare time: per DB, how many rows the merge would insert as of now.

Copies of the standby's databases (backup API, safe while it still serves) are brought to a scratch
folder on the primary and merged with `--dry-run`. It is also the schema pre-flight: a table the merge
does not understand refuses the recovery before anything is stopped. Only scratch copies are written
({wirebot_state_dir}/recovery/preview on the primary, .../outgoing/preview on the standby), then removed.
"""

import shlex

from tasks.playbooks import model, remote, timeline
from tasks.playbooks.facts import MergeDryRun


def _dry_run(run, copy: str, path: str, tenants: bool) -> str:
    result = run.primary.get_fact(MergeDryRun, agents_dir=run.data.wirebot_agents_dir, source=copy, target=path,
                                  tenants=tenants)
    if result["exit"] == 2:
        raise model.Refusal(f"Refusing to recover before stopping anything: the merge of {path} would abort "
                            f"with nothing changed: {result['error'].strip()}\nFix the schema, or recover "
                            "without merging that database's standby writes: --data recovery_skip_dbs=<path "
                            "relative to the data root> (its standby copy is kept on the primary).")
    if result["exit"] != 0:
        raise model.Refusal(f"Refusing to recover: the dry-run merge of {path} failed: {result['error'].strip()}")
    rows = model.merge_counts(result["report"])
    copied = sum(1 for row in rows if row["action"] == "dry-run-copy")
    text = f"{sum(row['inserted'] for row in rows)} rows to insert as of now"
    return text + (f", {copied} DB(s) to copy" if copied else "")


def preview(run, target, primary_view) -> dict:
    """{relative path: text} for the merge steps still to do; notes the counts for the summary."""
    marks = primary_view.marks(target.epoch)
    if model.VERIFIED in marks:
        return {}
    scratch = f"{run.data.wirebot_state_dir}/recovery/preview"
    counts = {}
    try:
        for relative, path, tenants in run.dbs:
            if model.merge_marker(relative) in marks:
                counts[relative] = "already merged"
                continue
            if relative in run.skip_dbs:
                counts[relative] = "skipped (recovery_skip_dbs): not merged"
                continue
            copy = f"{scratch}/{relative}"
            if tenants:
                names = [n for n in remote.sh(run.standby, f"cd {shlex.quote(path)} 2>/dev/null && ls -1 -- *.db "
                                                           "2>/dev/null; true", "listing tenant DBs").stdout_lines
                         if n.endswith(".db")]
                for name in names:
                    run._fetch(f"{path}/{name}", f"preview/{relative}/{name}", f"{copy}/{name}")
                if not names:
                    counts[relative] = "no tenant DB on the standby"
                    continue
            elif not run._fetch(path, f"preview/{relative}", copy):
                counts[relative] = "not on the standby"
                continue
            elif remote.exit_code(run.primary, f"test -f {shlex.quote(path)}")[0] != 0:
                counts[relative] = "new on the primary: to copy"
                continue
            counts[relative] = _dry_run(run, copy, path, tenants)
    finally:
        remote.sh(run.primary, f"rm -rf {shlex.quote(scratch)}", "removing the preview copies")
        remote.sh(run.standby, f"rm -rf {shlex.quote(run.outgoing('preview'))}", "removing the preview copies")
    timeline.note("recovery", "merge preview: " + "; ".join(f"{rel}: {text}" for rel, text in counts.items()))
    return counts
