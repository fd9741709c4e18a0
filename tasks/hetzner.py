"""Create, find or delete the Hetzner standby server; pyinfra needs the host to exist first.

    .venv/bin/python tasks/hetzner.py plan                   # preflight, cost, what create would do
    .venv/bin/python tasks/hetzner.py create [--dry-run]     # SSH key, firewall, server; records standby.address
    .venv/bin/python tasks/hetzner.py delete --confirm NAME  # deletes the server NAME (our labels only)
    .venv/bin/python tasks/hetzner.py COMMAND --help         # that command's flags and their defaults
    .venv/bin/python tasks/hetzner.py COMMAND --pair NAME    # the settings file's pair NAME (`pairs:` form)

The API token comes from HCLOUD_TOKEN and is never printed; HCLOUD_ENDPOINT overrides the API URL.
Settings: DEFAULTS (tasks/core/settings_schema.py, section "hetzner"), overridden by the ``hetzner:`` section
of the operator's settings file
($WIREBOT_SETTINGS or ~/.config/wirebot/settings.yml; keys with or without the ``hetzner_`` prefix),
overridden by command-line flags. Every setting is checked before any API call.
With the settings file's ``pairs:`` form each pair has a standby of its own: `--pair NAME` picks it
(required when the file has several pairs), the pair's own ``pairs.NAME.hetzner:`` overrides the
``hetzner:`` section, its primary is ``pairs.NAME.primary.address``, and create records
``pairs.NAME.standby.address``. Pairs never share a server, firewall or SSH key name (the rule:
tasks/hetzner_cloud/config.py).

Exit codes: 0 done, 2 settings or usage (or no virtualenv), 3 type/location/image not offered or no
capacity for it (nothing created; the alternatives are listed), 4 Hetzner API error (after
hcloud-python's retries; with the X-Correlation-Id Hetzner support asks for), 5 refused (not ours,
key clash, no confirmation). Progress is printed while actions run and before each of hcloud's retries.
The checkout's virtualenv: `python3 -m venv .venv && .venv/bin/pip install -e .` (docs/operator.md).
"""

import argparse
import ipaddress
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

VENV_SETUP = "python3 -m venv .venv && .venv/bin/pip install -e ."
try:  # every module this command needs from the install (pyproject.toml), before any of them is used
    import requests
    import yaml  # noqa: F401 - used by tasks.core.operator_settings
    from hcloud import APIException, Client
    from hcloud.actions import ActionException

    import tasks.core  # noqa: F401 - the checkout's own package, installed by `pip install -e .`
except ModuleNotFoundError as missing:  # the system Python, not the checkout's virtualenv
    print(f"error: tasks/hetzner.py needs the checkout's virtualenv ({missing.name} is not installed for "
          f"{sys.executable}): run `{VENV_SETUP}` in the checkout once, then "
          f"`.venv/bin/python tasks/hetzner.py ...`", file=sys.stderr)
    sys.exit(2)

from tasks.core import operator_settings, settings_schema  # noqa: E402
from tasks.hetzner_cloud import config, preflight, resources  # noqa: E402
from tasks.hetzner_cloud.errors import (  # noqa: E402
    CAPACITY_CODES,
    EXIT_API,
    EXIT_SETTINGS,
    ApiProblem,
    Problem,
    Refused,
    SettingsProblem,
    Unavailable,
    correlation,
    describe_action_error,
    describe_api_error,
    error_code,
)

# The settings, their defaults and meaning: section "hetzner" of tasks/core/settings_schema.py
DEFAULTS: Dict[str, Any] = settings_schema.defaults("hetzner")

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
# flag -> (setting key, argparse options)
FLAGS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "--server-name": ("hetzner_server_name", {"metavar": "NAME"}),
    "--server-type": ("hetzner_server_type", {"metavar": "TYPE"}),
    "--location": ("hetzner_location", {"metavar": "LOCATION"}),
    "--image": ("hetzner_image", {"metavar": "IMAGE"}),
    "--ssh-public-key": ("hetzner_ssh_public_key", {"metavar": "PATH"}),
    "--ssh-key-name": ("hetzner_ssh_key_name", {"metavar": "NAME"}),
    "--label": ("hetzner_labels", {"action": "append", "metavar": "KEY=VALUE"}),
    "--firewall-name": ("hetzner_firewall_name", {"metavar": "NAME"}),
    "--operator-cidr": ("hetzner_operator_cidrs", {"action": "append", "metavar": "CIDR"}),
    "--primary-address": ("hetzner_primary_address", {"metavar": "IP"}),
    "--agent-port": ("hetzner_agent_port", {"type": int, "metavar": "PORT"}),
}


def _flag_help(key: str) -> str:
    default = DEFAULTS[key]
    shown = "none: required" if default in (None, []) else (
        ",".join(f"{k}={v}" for k, v in default.items()) if isinstance(default, dict) else default)
    return f"hetzner.{key[len('hetzner_'):]} (default: {shown})"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """The command line: a command (plan, create, delete), each with only the flags it uses."""
    parser = argparse.ArgumentParser(
        prog="tasks/hetzner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="preflight and what create would do; no changes",
                               description="Preflight, cost and what create would do; changes nothing.")
    create = commands.add_parser("create", help="create or find the standby",
                                 description="Create (or find) the SSH key, firewall and server; records "
                                             "standby.address in the settings file.")
    create.add_argument("--dry-run", action="store_true", help="only look, and say what would be done")
    delete = commands.add_parser("delete", help="delete the standby server",
                                 description="Delete the standby server (ours by its labels only); the "
                                             "firewall and SSH key are kept.")
    delete.add_argument("--confirm", metavar="NAME", help="the exact server name, to confirm (required)")
    delete.add_argument("--dry-run", action="store_true", help="only look, and say what would be deleted")
    for command in (plan, create, delete):
        command.add_argument("--pair", metavar="NAME", help="the settings file's pair to act on (required when its "
                                                            "`pairs:` form has several)")
        keys = config.IDENTITY if command is delete else FLAGS_KEYS
        for flag, (key, options) in FLAGS.items():
            if key in keys:
                command.add_argument(flag, dest=key, help=_flag_help(key), **options)
    args = parser.parse_args(argv)
    for key, _ in FLAGS.values():
        if not hasattr(args, key):
            setattr(args, key, None)
    return args


FLAGS_KEYS = tuple(key for key, _ in FLAGS.values())


def flag_overrides(args: argparse.Namespace) -> Dict[str, Tuple[str, Any]]:
    """{setting key: (flag, value)} for each flag given."""
    overrides = {}
    for flag, (key, _) in FLAGS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if key == "hetzner_labels":
            try:
                value = config.parse_labels(value)
            except ValueError as error:
                raise SettingsProblem(str(error)) from None
        overrides[key] = (flag, value)
    return overrides


def show_retries(client: Client, say) -> None:
    """Say each of hcloud-python's retries before it sleeps: what failed, the wait, the attempt.

    hcloud-python (pinned in pyproject.toml) retries inside Client.request with no hook; this wraps its
    retry policy (to see the error) and retry interval (to see the wait) on this client only.
    """
    base = client._client
    policy, interval, seen = base._retry_policy, base._retry_interval_func, []

    def retry_policy(error):
        seen[:] = [error]
        return policy(error)

    def retry_interval(retries: int) -> float:
        seconds = interval(retries)
        error = seen.pop() if seen else None
        what = f"{error_code(error)}{correlation(error)}" if error is not None else "a timeout"
        say(f"  Hetzner API: {what}; retry {retries + 1} of {base._retry_max_retries} in {seconds:.1f} s")
        return seconds

    base._retry_policy, base._retry_interval_func = retry_policy, retry_interval


def make_client() -> Tuple[Client, str]:
    """A client for HCLOUD_ENDPOINT (default: the Hetzner Cloud API) with the HCLOUD_TOKEN token."""
    token = os.environ.get("HCLOUD_TOKEN", "").strip()
    if not token:
        raise SettingsProblem(
            "HCLOUD_TOKEN is not set: create a Read & Write API token in the Hetzner Cloud console "
            "(project > Security > API tokens) and export it; it is never printed or stored"
        )
    endpoint = os.environ.get("HCLOUD_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    client = Client(token=token, api_endpoint=endpoint, application_name="wirebot-standby", timeout=(10, 60))
    show_retries(client, lambda line: print(line, flush=True))
    return client, endpoint


def show_server(server: Any, offer: preflight.Offer, spec: config.StandbySpec) -> None:
    """Print the server's addresses and cost, and record its IPv4 in the operator's settings."""
    net = server.public_net
    if net is None or net.ipv4 is None:
        raise Refused(f"server {server.name!r} has no public IPv4: cannot record {spec.standby_key}.address")
    print(f"standby {server.name} (id {server.id}, {server.status})")
    print(f"  IPv4: {net.ipv4.ip}")
    if net.ipv6 is not None:
        print(f"  IPv6: {net.ipv6.ip} (the server's address: {ipaddress.ip_network(net.ipv6.ip)[1]})")
    print(f"  monthly cost: {offer.cost_line()}")
    recorded = operator_settings.recorded_address("standby", operator_settings.load(spec.settings_file), spec.pair)
    if recorded != net.ipv4.ip:
        operator_settings.save_address("standby", net.ipv4.ip, path=spec.settings_file, pair=spec.pair)
    print(f"recorded {spec.standby_key}.address = {net.ipv4.ip} in {spec.settings_file}")
    print("next: pyinfra inventory.py deploy.py")


def create(client: Client, spec: config.StandbySpec, dry_run: bool) -> None:
    """Preflight, then the SSH key, the firewall and the server (each found or created)."""
    offer = preflight.check(client, spec)
    print(f"preflight: {offer.cost_line()}")
    if offer.deprecation:
        print(f"warning: {spec.server_type} in {spec.location} is {offer.deprecation}: Hetzner stops offering "
              f"it then (a running server keeps running, but it cannot be created again). Consider instead "
              f"(monthly, gross):\n{offer.alternatives}")
    # Every ownership and key check comes first, so a refusal leaves nothing half created.
    server = resources.find_server(client, spec)
    firewall = resources.find_firewall(client, spec)
    key = resources.find_ssh_key(client, spec)
    key = resources.ensure_ssh_key(client, spec, key, dry_run, print)
    firewall = resources.ensure_firewall(client, spec, firewall, dry_run, print)
    try:
        server = resources.ensure_server(client, spec, offer, (server, key, firewall), dry_run, print)
    except ApiProblem as problem:
        if problem.code not in CAPACITY_CODES:
            raise
        raise Unavailable(f"{problem}. No server was created; the SSH key and firewall stay for the next run. "
                          f"Other choices (monthly, gross):\n{preflight.alternatives(client, spec)}\n"
                          f"  Choose one: set hetzner.server_type / hetzner.location in {spec.settings_file}, "
                          f"or pass --server-type / --location.") from None
    if dry_run:
        print("dry run: nothing was created or changed")
    else:
        show_server(server, offer, spec)


def delete(client: Client, spec: config.StandbySpec, dry_run: bool) -> None:
    """Delete the server; clear (pairs.NAME.)standby.address in the settings when it pointed at it."""
    ipv4 = resources.delete_server(client, spec, dry_run, print)
    if dry_run:
        print("dry run: nothing was deleted")
        return
    recorded = operator_settings.recorded_address("standby", operator_settings.load(spec.settings_file), spec.pair)
    if ipv4 and recorded == ipv4:
        operator_settings.save_address("standby", "", path=spec.settings_file, pair=spec.pair)
        print(f"cleared {spec.standby_key}.address ({ipv4}) in {spec.settings_file}")


def run(args: argparse.Namespace) -> int:
    """Resolve the settings, check the confirmation, then talk to the API."""
    deleting = args.command == "delete"
    spec = config.resolve(DEFAULTS, flag_overrides(args), full=not deleting, pair=args.pair)
    if deleting and args.confirm != spec.name:
        given = "no --confirm" if args.confirm is None else f"--confirm {args.confirm!r}"
        raise Refused(f"{given}: deleting needs the exact server name: delete --confirm {spec.name}")
    client, endpoint = make_client()
    if endpoint != DEFAULT_ENDPOINT:
        print(f"API endpoint: {endpoint}")
    try:
        if deleting:
            delete(client, spec, args.dry_run)
        else:
            create(client, spec, getattr(args, "dry_run", False) or args.command == "plan")
    except requests.RequestException as error:
        raise ApiProblem(f"cannot reach the Hetzner API at {endpoint}: {type(error).__name__}") from None
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """The command; returns the exit code. Errors are one line on stderr, never a traceback."""
    args = parse_args(argv)
    try:
        return run(args)
    except Problem as problem:
        print(f"error: {problem}", file=sys.stderr)
        return problem.exit_code
    except operator_settings.SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_SETTINGS
    except APIException as error:
        print(f"error: {describe_api_error(error)}", file=sys.stderr)
        return EXIT_API
    except ActionException as error:
        print(f"error: {describe_action_error(error)}", file=sys.stderr)
        return EXIT_API


if __name__ == "__main__":
    sys.exit(main())
