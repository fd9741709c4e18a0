"""Find-or-create the standby's SSH key, firewall and server; delete the server. Idempotent.

The find_* functions only look (and refuse what is not ours); with `dry_run` the ensure_* ones also
only look, and say what they would do. `say` prints one line.
Ownership is by labels: a server or firewall with our name but without our labels, or labelled
``wirebot-pair`` for another pair (config.py), is someone else's, and is never changed. The SSH key
is matched by its MD5 fingerprint, never by name alone.
"""

import time
from typing import Any, Callable, Iterable, List, Optional, Tuple

from hcloud import Client
from hcloud.actions import ActionFailedException, ActionTimeoutException
from hcloud.firewalls import Firewall, FirewallResource, FirewallRule

from tasks.core.operator_settings import DEFAULT_PAIR
from tasks.core.wait import WaitTimeout, wait_for
from tasks.hetzner_cloud.config import PAIR_LABEL, StandbySpec
from tasks.hetzner_cloud.errors import Refused, during
from tasks.hetzner_cloud.preflight import Offer

Say = Callable[[str], None]


POLL_SECONDS = 1.0  # between GET /actions/{id} while an action runs
ACTION_TIMEOUT_SECONDS = 600.0  # a server create takes under a minute; ten is a stuck action


def wait(actions: Iterable[Any], say: Say) -> None:
    """Wait for each action to finish, saying its progress whenever it changes (GET /actions/{id}
    every POLL_SECONDS); a failed action raises ActionFailedException, one still running after
    ACTION_TIMEOUT_SECONDS ActionTimeoutException."""
    for action in actions:
        if action is None:
            continue
        started, shown = time.monotonic(), {}

        def finished(action=action, started=started, shown=shown):
            action.reload()
            progress = (action.status, action.progress)
            if progress != shown.get("progress"):
                say(f"  {action.command} (action {action.id}): {action.status}, {action.progress or 0}% "
                    f"after {time.monotonic() - started:.0f} s")
                shown["progress"] = progress
            return action.status != "running"

        try:
            wait_for(finished, ACTION_TIMEOUT_SECONDS, POLL_SECONDS, f"Hetzner action {action.id}")
        except WaitTimeout:
            raise ActionTimeoutException(action=action) from None
        if action.status == "error":
            raise ActionFailedException(action=action)


def _ours(resource: Any, spec: StandbySpec) -> bool:
    """Our labels, and no other pair's: a resource labelled for another pair is never ours."""
    labels = resource.labels or {}
    if labels.get(PAIR_LABEL, DEFAULT_PAIR) != spec.pair:
        return False
    return all(labels.get(key) == value for key, value in spec.labels.items())


def wanted_rules(spec: StandbySpec) -> List[FirewallRule]:
    """Inbound: SSH from the operator's CIDRs, the agent port from the primary only. Nothing else."""
    return [
        FirewallRule(
            direction=FirewallRule.DIRECTION_IN,
            protocol=FirewallRule.PROTOCOL_TCP,
            port="22",
            source_ips=list(spec.operator_cidrs),
            description="ssh from the operator",
        ),
        FirewallRule(
            direction=FirewallRule.DIRECTION_IN,
            protocol=FirewallRule.PROTOCOL_TCP,
            port=str(spec.agent_port),
            source_ips=[spec.primary_cidr],
            description="standby agent from the primary",
        ),
    ]


def rule_key(rule: FirewallRule) -> Tuple:
    """A comparable form of a rule (address order does not matter)."""
    return (
        rule.direction,
        rule.protocol,
        rule.port,
        tuple(sorted(rule.source_ips or [])),
        tuple(sorted(rule.destination_ips or [])),
        rule.description,
    )


def find_ssh_key(client: Client, spec: StandbySpec) -> Optional[Any]:
    """The project's key with our fingerprint, or None; our key name on another key is Refused."""
    with during("looking up the SSH key"):
        key = client.ssh_keys.get_by_fingerprint(spec.fingerprint)
        same_name = None if key is not None else client.ssh_keys.get_by_name(spec.key_name)
    if same_name is not None:
        raise Refused(
            f"an SSH key named {spec.key_name!r} is already in the project with fingerprint "
            f"{same_name.fingerprint}, but {spec.public_key_path} has {spec.fingerprint}: not reusing it. "
            f"Set hetzner.ssh_key_name to a new name, or remove the old key in the Hetzner console."
        )
    return key


def _find_ours(kind: str, name: str, get_by_name, spec: StandbySpec, setting: str, refusal: str) -> Optional[Any]:
    """The `kind` named `name`, or None; one with the name but without our labels is Refused."""
    with during(f"looking up the {kind} {name!r}"):
        found = get_by_name(name)
    if found is not None and not _ours(found, spec):
        identity = f" (id {found.id})" if kind == "server" else ""
        raise Refused(
            f"a {kind} named {name!r} exists{identity} without the labels {spec.label_selector}: "
            f"{refusal}. Set hetzner.{setting} to another name."
        )
    return found


def find_firewall(client: Client, spec: StandbySpec) -> Optional[Any]:
    """Our firewall by name, or None; one with the name but not our labels is Refused."""
    return _find_ours("firewall", spec.firewall_name, client.firewalls.get_by_name, spec, "firewall_name",
                      "not ours, not changing it")


def find_server(client: Client, spec: StandbySpec) -> Optional[Any]:
    """Our server by name, or None; a server with the name but not our labels is Refused."""
    return _find_ours("server", spec.name, client.servers.get_by_name, spec, "server_name",
                      "not ours, not touching it")


def ensure_ssh_key(client: Client, spec: StandbySpec, key: Any, dry_run: bool, say: Say) -> Optional[Any]:
    """`key` (found by fingerprint), or the operator's key uploaded under hetzner_ssh_key_name."""
    if key is not None:
        say(f"ssh key: found {key.name!r} (MD5 {spec.fingerprint})")
        return key
    if dry_run:
        say(f"ssh key: would upload {spec.public_key_path} as {spec.key_name!r} (MD5 {spec.fingerprint})")
        return None
    with during(f"uploading the SSH key {spec.key_name!r}"):
        key = client.ssh_keys.create(name=spec.key_name, public_key=spec.public_key, labels=spec.labels)
    say(f"ssh key: uploaded {spec.key_name!r} (MD5 {key.fingerprint})")
    return key


def ensure_firewall(
    client: Client, spec: StandbySpec, firewall: Any, dry_run: bool, say: Say
) -> Optional[Any]:
    """Our firewall with exactly the wanted rules: created, or its rules set only when they differ."""
    rules = wanted_rules(spec)
    summary = f"22/tcp from {', '.join(spec.operator_cidrs)}; {spec.agent_port}/tcp from {spec.primary_cidr}"
    if firewall is None:
        if dry_run:
            say(f"firewall: would create {spec.firewall_name!r}: {summary}")
            return None
        with during(f"creating the firewall {spec.firewall_name!r}"):
            created = client.firewalls.create(name=spec.firewall_name, rules=rules, labels=spec.labels)
            wait(created.actions or [], say)
        say(f"firewall: created {spec.firewall_name!r}: {summary}")
        return created.firewall
    if sorted(map(rule_key, firewall.rules or [])) == sorted(map(rule_key, rules)):
        say(f"firewall: {spec.firewall_name!r} is up to date")
    elif dry_run:
        say(f"firewall: would replace the rules of {spec.firewall_name!r} with: {summary}")
    else:
        with during(f"setting the rules of the firewall {spec.firewall_name!r}"):
            wait(client.firewalls.set_rules(firewall, rules), say)
        say(f"firewall: rules of {spec.firewall_name!r} replaced: {summary}")
    return firewall


def _attach_firewall(client: Client, server: Any, firewall: Any, dry_run: bool, say: Say) -> None:
    attached = [entry.firewall.id for entry in (server.public_net.firewalls or [])]
    for other in attached:
        if firewall is not None and other != firewall.id:
            say(f"warning: firewall id {other} is also attached; its rules add to ours")
    if firewall is None:
        if dry_run:
            say(f"firewall: would attach the new firewall to {server.name!r}")
        return
    if firewall.id in attached:
        return
    if dry_run:
        say(f"firewall: would attach {firewall.name!r} to {server.name!r}")
        return
    with during(f"attaching the firewall to {server.name!r}"):
        resource = FirewallResource(type=FirewallResource.TYPE_SERVER, server=server)
        wait(client.firewalls.apply_to_resources(firewall, [resource]), say)
    say(f"firewall: attached {firewall.name!r} to {server.name!r}")


def ensure_server(
    client: Client, spec: StandbySpec, offer: Offer, found: Tuple[Any, Any, Any], dry_run: bool, say: Say
) -> Optional[Any]:
    """Our server (`found` = server, key, firewall), created with the key, firewall and labels."""
    server, key, firewall = found
    if server is not None:
        say(f"server: found {spec.name!r} (id {server.id}, {server.status})")
        kind, where = server.server_type.name, getattr(server.location, "name", None)
        if kind != spec.server_type or (where and where != spec.location):
            say(f"warning: it is a {kind} in {where}, not a {spec.server_type} in {spec.location}")
        _attach_firewall(client, server, firewall, dry_run, say)
        return server
    with during("listing servers by label"):
        others = client.servers.get_all(label_selector=spec.label_selector)
    for other in others:
        say(f"warning: server {other.name!r} also carries the labels {spec.label_selector}")
    if dry_run:
        say(
            f"server: would create {spec.name!r}: {spec.server_type} in {spec.location}, "
            f"image {spec.image}, labels {spec.label_selector}, with the key and firewall above"
        )
        return None
    with during(f"creating the server {spec.name!r}"):
        response = client.servers.create(
            name=spec.name,
            server_type=offer.server_type,
            image=offer.image,
            location=offer.location,
            ssh_keys=[key],
            firewalls=[Firewall(id=firewall.id)],
            labels=dict(spec.labels),
        )
        wait([response.action, *(response.next_actions or [])], say)
        server = client.servers.get_by_id(response.server.id)
    say(f"server: created {spec.name!r} (id {server.id}, {server.status})")
    return server


def delete_server(client: Client, spec: StandbySpec, dry_run: bool, say: Say) -> Optional[str]:
    """Delete our server; returns its IPv4 (None when there was nothing to delete or a dry run)."""
    server = find_server(client, spec)
    if server is None:
        say(f"server: no server named {spec.name!r}: nothing to delete")
        return None
    ipv4 = server.public_net.ipv4.ip if server.public_net and server.public_net.ipv4 else None
    if dry_run:
        say(f"server: would delete {spec.name!r} (id {server.id}, {ipv4})")
        return None
    with during(f"deleting the server {spec.name!r}"):
        wait([client.servers.delete(server)], say)
    say(f"server: deleted {spec.name!r} (id {server.id}); firewall {spec.firewall_name!r} and the SSH "
        f"key are kept (free of charge) for the next create")
    return ipv4
