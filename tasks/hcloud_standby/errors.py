"""Problems the command reports as one line and an exit code, and the Hetzner API error messages.

Retries are hcloud-python's own: ``Client.request`` retries ``rate_limit_exceeded`` and ``conflict``
(and 502/504, timeouts) up to 5 times with exponential backoff and jitter (1 s, 2 s, ... capped at
60 s). We add no retry loop of our own, so an error that reaches us has already been retried.
"""

from contextlib import contextmanager
from typing import Iterator

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
    """The Hetzner API answered with an error (after hcloud-python's own retries)."""

    exit_code = EXIT_API


class Refused(Problem):
    """We will not touch something: not ours, a key conflict, or a missing confirmation."""

    exit_code = EXIT_REFUSED


# Error codes of the Hetzner Cloud API (the `error.code` field), and what the operator should do.
API_MESSAGES = {
    "unauthorized": "the API token was refused (401 unauthorized): check that HCLOUD_TOKEN is a current "
    "token of the right project",
    "forbidden": "the API token may not do this (403 forbidden): use a Read & Write token of the project",
    "not_found": "not found (404 not_found): {message}",
    "conflict": "the resource is busy with another action (409 conflict), still busy after retries: "
    "run again in a minute",
    "uniqueness_error": "a name or key is already taken in the project (409 uniqueness_error): {message}",
    "invalid_input": "the API rejected the request (422 invalid_input): {message}",
    "rate_limit_exceeded": "rate limit exceeded (429 rate_limit_exceeded), still limited after hcloud's "
    "retries with backoff: wait for the limit to recover (up to an hour) and run again",
    "resource_limit_exceeded": "a project limit is reached (resource_limit_exceeded): {message}",
    "resource_unavailable": "the resource is unavailable at the moment (resource_unavailable): {message}",
    "protected": "the resource is protected (protected): remove its protection first: {message}",
    "locked": "the resource is locked by another action (locked): run again shortly",
    "maintenance": "the Hetzner API is in maintenance (maintenance): run again later",
    "server_error": "the Hetzner API failed (server_error): run again later",
}
# When an error response carries no JSON body, hcloud-python gives the HTTP status instead of a code.
HTTP_STATUS_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_input",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "maintenance",
}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_api_error(error: APIException) -> str:
    """A one-line, actionable description of an API error (never includes request headers)."""
    code = HTTP_STATUS_CODES.get(error.code, error.code) if isinstance(error.code, int) else error.code
    message = _one_line(error.message)
    fields = (error.details or {}).get("fields") if isinstance(error.details, dict) else None
    if fields:
        message += "; " + "; ".join(
            f"{field.get('name')}: {', '.join(field.get('messages') or [])}" for field in fields
        )
    template = API_MESSAGES.get(code)
    if template is None:
        return f"Hetzner API error ({error.code}): {message}"
    return template.format(message=message)


@contextmanager
def during(what: str) -> Iterator[None]:
    """Turn an API or action error raised inside the block into an ApiProblem naming `what`."""
    try:
        yield
    except APIException as error:
        raise ApiProblem(f"{what}: {describe_api_error(error)}") from None
    except ActionException as error:
        raise ApiProblem(f"{what}: {_one_line(error.message)}") from None
