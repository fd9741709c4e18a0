"""Problems the command reports as one line and an exit code, and the Hetzner API error messages.

Retries are hcloud-python's own: ``Client.request`` retries ``rate_limit_exceeded`` and ``conflict``
(and 502/504, timeouts) up to 5 times with exponential backoff and jitter (1 s, 2 s, ... capped at
60 s). We add no retry loop of our own, so an error that reaches us has already been retried.
"""

from contextlib import contextmanager
from typing import Any, Iterator

from hcloud import APIException
from hcloud.actions import ActionException

EXIT_SETTINGS = 2
EXIT_UNAVAILABLE = 3
EXIT_API = 4
EXIT_REFUSED = 5


class Problem(Exception):
    """A failure we explain in one line; `exit_code` is what the command returns."""

    exit_code = 1


class SettingsProblem(Problem):
    """A setting is missing or malformed (found before any API call)."""

    exit_code = EXIT_SETTINGS


class Unavailable(Problem):
    """The requested server type, location or image is not offered; nothing was created."""

    exit_code = EXIT_UNAVAILABLE


class ApiProblem(Problem):
    """The Hetzner API answered with an error (after hcloud-python's own retries); `code` is its error code."""

    exit_code = EXIT_API

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


class Refused(Problem):
    """We will not touch something: not ours, a key conflict, or a missing confirmation."""

    exit_code = EXIT_REFUSED


# Error codes of the Hetzner Cloud API (the `error.code` field, or an action's `error.code`) and what the
# operator should do: one line each. Source: the API reference's "Errors" table (status, code,
# description: docs.hetzner.cloud, "Errors"; as mirrored in the hcloud client docs) and the
# operation-specific errors of the endpoints this command calls (Create a Server; Change the Type of a
# Server; Firewall actions). The HTTP status is the one the reference gives for the code.
API_MESSAGES = {
    "json_error": "the API could not parse the request (400 json_error): {message}; this is a bug in "
    "tasks/hetzner.py or hcloud-python, please report it with the correlation id",
    "unauthorized": "the API token was refused (401 unauthorized): check that HCLOUD_TOKEN is a current "
    "token of the right project",
    "token_readonly": "the API token is read-only (401 token_readonly): create a Read & Write token "
    "(project > Security > API tokens) and export it as HCLOUD_TOKEN",
    "forbidden": "the API token may not do this (403 forbidden): use a Read & Write token of the project",
    "maintenance": "Hetzner is in maintenance for this (403 maintenance): run again later; see "
    "https://status.hetzner.com",
    "resource_limit_exceeded": "a project limit is reached (403 resource_limit_exceeded): {message}; delete "
    "unused resources or ask Hetzner to raise the limit (console > Limits)",
    "not_found": "not found (404 not_found): {message}",
    "method_not_allowed": "the API does not allow this request (405 method_not_allowed): {message}; "
    "update tasks/hetzner.py and hcloud-python",
    "uniqueness_error": "a name or key is already taken in the project (409 uniqueness_error): {message}",
    "conflict": "the resource changed during the request (409 conflict), still after hcloud's retries: "
    "run again in a minute",
    "deprecated_api_endpoint": "the API removed this function (410 deprecated_api_endpoint): {message}; "
    "update hcloud-python (pyproject.toml) and tasks/hetzner.py",
    "resource_unavailable": "Hetzner cannot provide this now (412 resource_unavailable): {message}",
    "placement_error": "Hetzner could not place the server (placement_error): {message}",
    "invalid_input": "the API rejected the request (422 invalid_input): {message}",
    "service_error": "a Hetzner service failed (422 service_error): {message}; run again, and if it "
    "persists ask Hetzner support with the correlation id",
    "unsupported_error": "the resource does not support this action (422 unsupported_error): {message}",
    "invalid_server_type": "the server type does not fit this server or is deprecated "
    "(invalid_server_type): {message}; choose another with `plan`",
    "server_not_stopped": "the server must be stopped for this (server_not_stopped): power it off in the "
    "console, or delete and create it again",
    "primary_ip_assigned": "the Primary IP is already assigned to another server (primary_ip_assigned): "
    "{message}",
    "primary_ip_datacenter_mismatch": "the Primary IP is in another datacenter "
    "(primary_ip_datacenter_mismatch): {message}",
    "primary_ip_version_mismatch": "the Primary IP has the wrong IP version (primary_ip_version_mismatch): "
    "{message}",
    "firewall_already_applied": "the firewall is already applied to the server (firewall_already_applied): "
    "run again, it will be found",
    "firewall_already_removed": "the firewall is already removed from the server (firewall_already_removed): "
    "run again",
    "firewall_resource_not_found": "the server the firewall should apply to is gone "
    "(firewall_resource_not_found): {message}; run again",
    "locked": "the resource is locked by another action (423 locked): run again shortly",
    "protected": "the resource is protected (423 protected): remove its protection in the console first: "
    "{message}",
    "rate_limit_exceeded": "rate limit exceeded (429 rate_limit_exceeded), still limited after hcloud's "
    "retries with backoff: wait for the limit to recover (up to an hour) and run again",
    "server_error": "the Hetzner API failed (500 server_error): run again later",
    "bad_gateway": "the Hetzner API was unreachable behind its gateway (502 bad_gateway), still after "
    "hcloud's retries: run again later",
    "unavailable": "the service or product is not available now (503 unavailable): {message}; run again "
    "later or choose another type or location",
    "timeout": "the API timed out (504 timeout), still after hcloud's retries: run again; the resource may "
    "have been created: a second run finds it",
}
# Capacity problems: nothing was created; tasks/hetzner.py adds the alternatives `plan` would list.
CAPACITY_CODES = ("resource_unavailable", "placement_error")
# When an error response carries no JSON body, hcloud-python gives the HTTP status instead of a code.
HTTP_STATUS_CODES = {
    400: "json_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "deprecated_api_endpoint",
    412: "resource_unavailable",
    422: "invalid_input",
    423: "locked",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_code(error: Any) -> str:
    """The API error code of an APIException (its HTTP status mapped when there was no JSON body) or of a
    failed action's error, '' when there is none."""
    if isinstance(error, APIException):
        code = error.code
        return HTTP_STATUS_CODES.get(code, str(code)) if isinstance(code, int) else str(code)
    action_error = getattr(getattr(error, "action", None), "error", None) or {}
    return str(action_error.get("code") or "")


def correlation(error: Any) -> str:
    """'; X-Correlation-Id ...' for the message when the API sent one (Hetzner support asks for it)."""
    ident = getattr(error, "correlation_id", None)
    return f" (X-Correlation-Id {ident}: quote it to Hetzner support)" if ident else ""


def describe_api_error(error: APIException) -> str:
    """A one-line, actionable description of an API error (never includes request headers)."""
    code = error_code(error)
    message = _one_line(error.message)
    fields = (error.details or {}).get("fields") if isinstance(error.details, dict) else None
    if fields:
        message += "; " + "; ".join(
            f"{field.get('name')}: {', '.join(field.get('messages') or [])}" for field in fields
        )
    template = API_MESSAGES.get(code)
    text = f"Hetzner API error ({error.code}): {message}" if template is None else template.format(message=message)
    return text + correlation(error)


def describe_action_error(error: ActionException) -> str:
    """One line for a failed or timed-out action, by its error code when it has one."""
    action = error.action
    details = action.error or {}
    code, message = details.get("code"), _one_line(details.get("message") or error.message)
    template = API_MESSAGES.get(code) if code else None
    text = template.format(message=message) if template else _one_line(error.message)
    return f"action {action.command} (id {action.id}) failed: {text}"


@contextmanager
def during(what: str) -> Iterator[None]:
    """Turn an API or action error raised inside the block into an ApiProblem naming `what`."""
    try:
        yield
    except APIException as error:
        raise ApiProblem(f"{what}: {describe_api_error(error)}", code=error_code(error)) from None
    except ActionException as error:
        raise ApiProblem(f"{what}: {describe_action_error(error)}", code=error_code(error)) from None
