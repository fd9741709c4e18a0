"""The playbooks' facts (tasks/playbooks/facts.py): the merge dry run and the last JSON line, parsed."""

import json

from tasks.playbooks.facts import MergeDryRun, last_json


def test_the_dry_run_fact_reads_exit_code_report_and_error(merge_report):
    fact = MergeDryRun()
    ok = fact.process([json.dumps(merge_report), "EXIT 0"])
    assert ok["exit"] == 0 and ok["report"]["databases"][0]["inserted"] == 12 and ok["error"] is None
    schema = fact.process(["merge: schema error, nothing changed in that database: x: table 'y': no key", "EXIT 2"])
    assert schema["exit"] == 2 and schema["report"] is None and "table 'y'" in schema["error"]


def test_last_json_takes_the_last_object_line():
    assert last_json(["noise", '{"a": 1}', '{"b": 2}', "tail"]) == {"b": 2}
    assert last_json(["[1, 2]", "{broken"]) is None
