"""Least privilege for the units the deploy writes: each unit's user, capabilities and sandbox, from one
table, rendered as systemd directives into its template (docs/security.md, "Least privilege").

Every sandboxed unit sees the file system read-only (ProtectSystem=strict) except the paths it writes,
has no home folders (ProtectHome=tmpfs: empty), and sees empty folders in place of the places secrets
live on the hosts (secret_dirs). What it may read of them is mounted back read-only, file by file:
adding a secret for a service is one line in unit_secrets(). A unit that runs as its own user gets its
secrets by LoadCredential= instead (systemd reads them as root and hands the unit a private copy).
Either way a unit sees its secrets as they were when it started: the deploy restarts it when one
changes (secrets_digest() goes into its root-only config).
"""

import hashlib
from pathlib import Path, PurePosixPath

from tasks.core.secrets import METRICS_READER_CERT

# Hardening every unit gets (each is scored by `systemd-analyze security`).
COMMON = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=tmpfs",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallErrorNumber=EPERM",
)
INET = ("AF_UNIX", "AF_INET", "AF_INET6")
# For units that neither chown nor change their limits: refused with EPERM (SystemCallErrorNumber).
NO_PRIVILEGED_CALLS = "SystemCallFilter=~@privileged @resources"
# sshd's folder (its host keys) is hidden as a whole (a file-level mount would not survive the file being
# replaced); what an ssh client reads of it comes back read-only.
SSH_DIR = "/etc/ssh"
SSH_CLIENT_FILES = ("/etc/ssh/ssh_config", "/etc/ssh/ssh_config.d")


def secret_dirs(data) -> list:
    """Where secrets live on a host (besides the home folders): hidden from every sandboxed unit."""
    return [f"{data.wirebot_config_dir}/secrets", data.wirebot_run_dir,
            str(PurePosixPath(data.cloudflared_config).parent), data.agent_keys_dir]


def unit_secrets(data, unit: str) -> list:
    """The secret files `unit` may read (paths on the host); everything else of secret_dirs() is hidden."""
    run = data.wirebot_run_dir
    return {
        "replicator": [f"{run}/agent-hmac.key", f"{run}/discord-webhook.url", data.replica_key,
                       data.agent_keys_dir],
        "standby": [f"{run}/agent-hmac.key", f"{run}/discord-webhook.url", f"{run}/cloudflare-api-token",
                    data.fence_key, data.agent_keys_dir],
        "litestream": [data.replica_key],
    }[unit]


def control_socket(data) -> str:
    """Directives giving an agent its control socket's folder (wirebot.common.channel), private (0700) and writable
    under ProtectSystem=strict: systemd's RuntimeDirectory= when it is under /run, else a writable path."""
    folder = PurePosixPath(data.agent_control_socket).parent
    if folder.parent == PurePosixPath("/run"):
        return f"RuntimeDirectory={folder.name}\nRuntimeDirectoryMode=0700"
    return f"ReadWritePaths=-{folder}"


def secrets_digest(data, unit: str) -> str:
    """sha256 over the operator's copies (secrets_dir) of the secrets `unit` reads: changes when one does.
    Keys made on the hosts (replication, fence) are not in secrets_dir and never change by a deploy. The
    agents' also covers the metrics reader's certificate while agent_metrics_sources is set."""
    digest = hashlib.sha256()
    by_target = {target: name for name, target in data.secrets_files.items()}
    for path in unit_secrets(data, unit):
        name = by_target.get(PurePosixPath(path).name) if path.startswith(data.wirebot_run_dir + "/") else None
        source = Path(data.secrets_dir) / name if name else None
        if source is not None and source.is_file():
            digest.update(path.encode() + b"\0" + source.read_bytes() + b"\0")
    reader = Path(data.secrets_dir) / METRICS_READER_CERT  # pinned by the trust deploy while sources are set
    if unit in ("replicator", "standby") and data.agent_metrics_sources and reader.is_file():
        digest.update(b"metrics-reader\0" + reader.read_bytes() + b"\0")
    return digest.hexdigest()


def _home_paths(paths) -> list:
    return [p for p in paths if p == "/root" or p.startswith(("/root/", "/home/"))]


def root_unit(data, unit: str, capabilities, read_write=(), read=(), families=INET, umask="0077",
              chown=True, ssh_client=True) -> str:
    """Directives of a unit that must run as root (uid 0), with only `capabilities` left.

    + read_write: paths it writes (home folders among them are mounted back writable)
    + read: other home-folder paths it reads (mounted back read-only)
    + chown: it changes owners (False: the @privileged and @resources system calls are refused too)
    + ssh_client: it runs OpenSSH's ssh (its client config stays visible)
    """
    lines = ["User=root", f"CapabilityBoundingSet={' '.join(capabilities)}", "AmbientCapabilities=",
             f"UMask={umask}", f"RestrictAddressFamilies={' '.join(families)}", *COMMON]
    lines += [] if chown else [NO_PRIVILEGED_CALLS]
    lines += [f"ReadWritePaths=-{path}" for path in read_write if path not in _home_paths(read_write)]
    lines += [f"BindPaths=-{path}" for path in _home_paths(read_write)]
    lines += [f"BindReadOnlyPaths=-{path}" for path in _home_paths(read)]
    lines += [f"TemporaryFileSystem={path}:ro" for path in secret_dirs(data)]
    lines += [f"BindReadOnlyPaths=-{path}" for path in unit_secrets(data, unit)]
    lines += [f"TemporaryFileSystem={SSH_DIR}:ro"]
    lines += [f"BindReadOnlyPaths=-{path}" for path in SSH_CLIENT_FILES] if ssh_client else []
    return "\n".join(lines)


def user_unit(read_write=(), credentials=(), families=INET, user=None) -> str:
    """Directives of a unit that runs as an unprivileged user (`user`, or a dynamic one) with no
    capabilities; `credentials` = [(name, host path)] it gets by LoadCredential= (read as %d/name)."""
    lines = [f"User={user}" if user else "DynamicUser=yes", "CapabilityBoundingSet=", "AmbientCapabilities=",
             "UMask=0027", "RemoveIPC=yes", f"RestrictAddressFamilies={' '.join(families)}", *COMMON,
             NO_PRIVILEGED_CALLS]
    lines += [f"ReadWritePaths=-{path}" for path in read_write]
    lines += [f"LoadCredential={name}:{path}" for name, path in credentials]
    return "\n".join(lines)
