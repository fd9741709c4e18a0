"""Where the checkout's own files are, on the control machine: the one place that knows the tree's shape
(the templates the deploys render, the agents' source they copy, group data the settings check reads)."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # tasks/core/checkout.py -> the checkout's root
TEMPLATES = CHECKOUT / "templates"  # Jinja2 templates of units and configs (files.template / get_template)
FILES = CHECKOUT / "files"  # files deployed as they are
AGENTS_SRC = FILES / "agents" / "wirebot"  # the agents' package, copied to wirebot_agents_dir on the hosts
GROUP_DATA = CHECKOUT / "group_data"  # pyinfra's group data (the settings' defaults per group)
