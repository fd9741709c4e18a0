"""Recovery steps 2 and 3: merge the standby's writes into the primary, then verify by set comparison.

A mixin of tasks.playbooks.recovery_plan.Recovery (which provides target(), marker(), the paths and hosts).
Per database: a consistent copy on the standby (backup API, Litestream's bookkeeping tables left out),
fetched through the control machine to {wirebot_state_dir}/recovery/epoch-T/standby/ on the primary
and merged there by wirebot.hosttools.merge (insert-or-ignore by primary key, one transaction per DB; a tenant
DB only on the standby is copied). The copies stay as evidence; step 3 compares their keys.
"""

import shlex
from pathlib import PurePosixPath

from wirebot.common import layout

from tasks.playbooks import model, remote, timeline
from tasks.playbooks.model import STOPPED, VERIFIED
from tasks.playbooks.remote import StepFailed

PLAYBOOK = "recovery"


class MergeSteps:
    """Steps 2 (merge, one op per DB) and 3 (verify)."""

    # 2 merge (one per database) -----------------------------------------------------------------------
    def _merge_check(self, relative, preview=None):
        def check():
            target, primary, _ = self.target()
            if target is None or model.merge_marker(relative) in primary.marks(target.epoch):
                self.explained[f"merge {relative}"] = target and f"merged earlier for epoch {target.epoch}"
                return None
            return f"merge the standby's {relative} into the primary" + (f" (preview: {preview})" if preview else "")
        return check

    def _merge_run(self, relative, path, tenants):
        return lambda todo: self.merge(relative, path, tenants)

    def merge(self, relative: str, path: str, tenants: bool) -> str:
        target, primary, standby = self.target()
        self._require(STOPPED in primary.marks(target.epoch), "step 1 (stop) has not completed")
        serving = [u for u in layout.serving_units(self.connector) if standby.active(u)]
        self._require(not serving, f"the standby serves again ({', '.join(serving)}): run the recovery again")
        copy = self.copy_path(target.epoch, relative)
        if tenants:
            names = remote.sh(self.standby, f"cd {shlex.quote(path)} 2>/dev/null && ls -1 -- *.db 2>/dev/null; true",
                              "listing the standby's tenant DBs").stdout_lines
            names = [n for n in names if n.endswith(".db")]
            for name in names:
                self._fetch(f"{path}/{name}", f"{relative}/{name}", f"{copy}/{name}")
            if not names:
                self.marker(target.epoch, model.merge_marker(relative), {"absent": True})
                return f"{relative}: no tenant DB on the standby"
            command = remote.agents(self.data, "hosttools.merge", "--tenants-source", copy, "--tenants-target", path,
                                    "--json")
        else:
            if not self._fetch(path, relative, copy):
                self.marker(target.epoch, model.merge_marker(relative), {"absent": True})
                return f"{relative}: not on the standby, nothing to merge"
            has = remote.exit_code(self.primary, f"test -f {shlex.quote(path)}")[0] == 0
            command = (remote.agents(self.data, "hosttools.merge", "--source", copy, "--target", path, "--json") if has
                       else remote.agents(self.data, "hosttools.incident", "copy", "--source", copy, "--target", path))
        if relative in self.skip_dbs:
            self.marker(target.epoch, model.merge_marker(relative), {"skipped": True, "copy": copy})
            timeline.note(PLAYBOOK, f"{relative}: the standby's writes were NOT merged (recovery_skip_dbs); its "
                                    f"copy is kept on the primary at {copy}")
            return f"{relative}: SKIPPED (recovery_skip_dbs); standby copy kept at {copy}"
        code, stdout, stderr = remote.exit_code(self.primary, command)
        if code == 2:
            raise StepFailed(f"{relative}: {stderr.strip() or stdout.strip()} (to recover without merging this DB: "
                             f"--data recovery_skip_dbs={relative}; its standby copy is kept)")
        self._require(code == 0, f"{relative}: wirebot.hosttools.merge exited {code}: "
                                 f"{(stderr or stdout).strip()[-400:]}")
        folder = str(PurePosixPath(path)) if tenants else str(PurePosixPath(path).parent)
        pattern = "" if tenants else f"-name {shlex.quote(PurePosixPath(path).name + '*')}"
        remote.sh(self.primary, f"find {shlex.quote(folder)} -maxdepth 1 {pattern} -user root "
                                f"-exec chown --reference={shlex.quote(folder)} {{}} +", "giving the DB files back")
        counts = model.merge_counts(remote.last_json(stdout))
        self.marker(target.epoch, model.merge_marker(relative), {"counts": counts})
        inserted = sum(c["inserted"] for c in counts)
        copied = sum(1 for c in counts if c["action"] == "copied")
        standby_rows = sum(c["source_rows"] for c in counts)
        return (f"{relative}: {inserted} rows inserted ({standby_rows} rows on the standby"
                + (f", {copied} DB(s) copied" if copied else "") + ")")

    def _fetch(self, source: str, relative: str, copy: str) -> bool:
        """Snapshot `source` on the standby and bring it to `copy` on the primary; False if absent."""
        outgoing = self.outgoing(relative)
        code, stdout, stderr = remote.exit_code(self.standby, remote.agents(
            self.sdata, "hosttools.incident", "snapshot", "--db", source, "--out", outgoing))
        if code != 0 and "not found" in stderr:
            return False
        self._require(code == 0, f"snapshot of {source} on the standby failed: {stderr.strip()[-300:]}")
        remote.transfer(self.standby, outgoing, self.primary, copy)
        return True

    # 3 verify ----------------------------------------------------------------------------------------
    def verify_check(self):
        target, primary, _ = self.target()
        if target is None or VERIFIED in primary.marks(target.epoch):
            self.explained["verify"] = target and f"verified earlier for epoch {target.epoch} ({VERIFIED})"
            return None
        return "compare the primary keys of the standby's copies with the primary's databases"

    def verify_run(self, todo):
        target, primary, _ = self.target()
        missing_steps = [r for r, _, _ in self.dbs if model.merge_marker(r) not in primary.marks(target.epoch)]
        self._require(not missing_steps, f"not merged yet: {', '.join(missing_steps)}")
        rows = []
        for relative, path, _ in self.dbs:
            copy = self.copy_path(target.epoch, relative)
            if relative in self.skip_dbs or remote.exit_code(self.primary, f"test -e {shlex.quote(copy)}")[0] != 0:
                continue
            code, stdout, stderr = remote.exit_code(self.primary, remote.agents(
                self.data, "hosttools.incident", "keys", "--source", copy, "--target", path))
            self._require(code in (0, 3), f"{relative}: key comparison failed: {stderr.strip()[-300:]}")
            rows += model.keys_counts(remote.last_json(stdout))
        text = "; ".join(f"{PurePosixPath(r['path']).name}: {r['source_keys']} standby keys, {r['missing']} missing "
                         f"({r['target_keys']} on the primary)" for r in rows) or "no standby database to compare"
        self._require(all(r["missing"] == 0 for r in rows), f"keys missing on the primary: {text}")
        self.marker(target.epoch, VERIFIED, {"databases": rows})
        return text
