"""A local stand-in for the Hetzner Cloud API (test equipment, never deployed): 127.0.0.1 only, an ephemeral port.

It answers the endpoints ``tasks/hetzner.py`` uses with the API's JSON shapes (pagination meta,
``{"error": {"code", "message", "details"}}`` errors, actions that run then succeed), checks the
bearer token, and records every request (method, path, query, JSON body; never the token) so tests
can assert what was asked. ``fail()`` injects error answers; every answer carries an
``X-Correlation-Id`` header (``last_correlation_id``). Prices and offers are test figures in the API's
format, not Hetzner's price list; as on Hetzner, the ARM types are offered in EU only, and the CPX Gen 1
and CX Gen 2 types carry per-location ``deprecation`` objects with Hetzner's dates (announced
2025-10-16, unavailable after 2025-12-31); ``deprecate()`` sets other dates.
"""

import base64
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, urlsplit

NOW = "2025-01-01T00:00:00+00:00"
EU, ALL = ("fsn1", "nbg1", "hel1"), ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")
LOCATIONS = [  # id, name, description, country, city, latitude, longitude, network zone
    (1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071, "eu-central"),
    (2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665, "eu-central"),
    (3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379, "eu-central"),
    (4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045833, -77.487778, "us-east"),
    (5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.95194, "us-west"),
    (6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333, "ap-southeast"),
]
# id, name, architecture, cores, memory GB, disk GB, net monthly EUR in the EU, elsewhere; offered in
SERVER_TYPES = [
    (45, "cax11", "arm", 2, 4.0, 40, "3.79", None, EU),
    (93, "cax21", "arm", 4, 8.0, 80, "6.49", None, EU),
    (22, "cpx11", "x86", 2, 2.0, 40, "4.35", "5.09", ALL),
    (104, "cx22", "x86", 2, 4.0, 40, "3.79", None, EU),
    (23, "cpx21", "x86", 3, 4.0, 80, "7.55", "8.99", ALL),
    (108, "cpx22", "x86", 2, 4.0, 80, "7.99", "9.49", ALL),
    (109, "cx23", "x86", 2, 4.0, 40, "3.49", None, EU),
]
# Hetzner deprecated CPX Gen 1 and CX Gen 2 on 2025-10-16; they were removed at the end of 2025.
GEN1_DEPRECATION = {"announced": "2025-10-16T00:00:00+00:00", "unavailable_after": "2025-12-31T00:00:00+00:00"}
DEPRECATED = ("cpx11", "cpx21", "cx22")
VAT = 1.19


def _price(net: str) -> Dict[str, str]:
    return {"net": f"{float(net):.10f}", "gross": f"{float(net) * VAT:.10f}"}


def md5_fingerprint(public_key: str) -> str:
    """As the API computes it: MD5 of the base64-decoded key data, hex pairs joined by ':'."""
    digest = hashlib.md5(base64.b64decode(public_key.split()[1])).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, 32, 2))


@dataclass
class Recorded:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: Dict[str, List[str]]
    body: Any


class ApiError(Exception):
    """An error answer: HTTP status, error code, message."""

    def __init__(self, status: int, code: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def _matches(labels: Dict[str, str], selector: str) -> bool:
    """The label selector terms we use: ``key=value`` and ``key``, comma-separated (all must hold)."""
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _page(key: str, found: List[dict], query: dict) -> tuple:
    page, per_page = int(query.get("page", ["1"])[0]), int(query.get("per_page", ["25"])[0])
    last = max(1, -(-len(found) // per_page))
    pagination = {"page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
                  "next_page": page + 1 if page < last else None, "last_page": last,
                  "total_entries": len(found)}
    return 200, {key: found[(page - 1) * per_page : page * per_page], "meta": {"pagination": pagination}}


class HcloudStandin:
    """The fake API's state (plain dicts, as the API returns them), routes and request log."""

    def __init__(self, token: str, polls_until_done: int = 1):
        self.token = token
        self.polls_until_done = polls_until_done  # GET /actions/{id} answers "running" this many times
        self.requests: List[Recorded] = []
        self.failures: List[list] = []
        self.ids = itertools.count(1000)
        self.lock = threading.Lock()
        self.locations = [dict(zip(("id", "name", "description", "country", "city", "latitude",
                                    "longitude", "network_zone"), row)) for row in LOCATIONS]
        self.server_types = [self._server_type(*row) for row in SERVER_TYPES]
        for name in DEPRECATED:
            self.deprecate(name, **GEN1_DEPRECATION)
        self.correlation_ids = itertools.count(0xC0FFEE)
        self.last_correlation_id: Optional[str] = None
        self.ssh_keys: List[dict] = []
        self.firewalls: List[dict] = []
        self.servers: List[dict] = []
        self.actions: Dict[int, dict] = {}
        self.routes = [(method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in (
            ("GET", "/locations", self.list_of("locations", self.locations)),
            ("GET", "/server_types", self.list_of("server_types", self.server_types)),
            ("GET", "/pricing", self.pricing),
            ("GET", "/images", self.images),
            ("GET", "/ssh_keys", self.list_of("ssh_keys", self.ssh_keys)),
            ("POST", "/ssh_keys", self.create_ssh_key),
            ("GET", "/firewalls", self.list_of("firewalls", self.firewalls)),
            ("POST", "/firewalls", self.create_firewall),
            ("POST", "/firewalls/(\\d+)/actions/set_rules", self.set_rules),
            ("POST", "/firewalls/(\\d+)/actions/apply_to_resources", self.apply_to_resources),
            ("GET", "/servers", self.list_of("servers", self.servers)),
            ("GET", "/servers/(\\d+)", self.one_of("server", self.servers)),
            ("POST", "/servers", self.create_server),
            ("DELETE", "/servers/(\\d+)", self.delete_server),
            ("GET", "/actions/(\\d+)", self.get_action),
        )]
        self.httpd: Optional[ThreadingHTTPServer] = None

    # --- test controls ---------------------------------------------------------------------------
    def start(self) -> str:
        """Serve on 127.0.0.1 (ephemeral port) in a thread; returns the API endpoint URL."""
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                standin.serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        """Stop serving."""
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    def fail(self, method: str, path: str, status: int, code: str, message: str = "injected",
             times: Optional[int] = 1, details: Optional[dict] = None) -> None:
        """Answer the next `times` requests `method path` (None: all of them) with this error."""
        self.failures.append([method, path, ApiError(status, code, message, details), times])

    def deprecate(self, name: str, announced: str, unavailable_after: str, location: Optional[str] = None) -> None:
        """Give the type `name` a deprecation object at `location` (None: at every location it is offered)."""
        kind = next(t for t in self.server_types if t["name"] == name)
        for entry in kind["locations"]:
            if location in (None, entry["name"]):
                entry["deprecation"] = {"announced": announced, "unavailable_after": unavailable_after}

    def writes(self) -> List[Recorded]:
        """Every request that was not a GET."""
        return [r for r in self.requests if r.method != "GET"]

    def calls(self, method: str, path: str) -> List[Recorded]:
        """The recorded requests `method path`."""
        return [r for r in self.requests if r.method == method and r.path == path]

    # --- HTTP -------------------------------------------------------------------------------------
    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Record the request, answer it (or its injected error) as JSON."""
        url = urlsplit(handler.path)
        path = url.path[3:] if url.path.startswith("/v1") else url.path
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        query = parse_qs(url.query)
        headers = {}
        with self.lock:
            self.requests.append(Recorded(handler.command, path, query, body))
            try:
                status, payload = self.dispatch(handler, path, query, body)
            except ApiError as error:
                status = error.status
                payload = {"error": {"code": error.code, "message": error.message, "details": error.details}}
                if error.code == "rate_limit_exceeded":
                    headers = {"RateLimit-Limit": "3600", "RateLimit-Remaining": "0", "RateLimit-Reset": "1"}
        data = json.dumps(payload).encode()
        self.last_correlation_id = f"{next(self.correlation_ids):08x}-standin"
        headers["X-Correlation-Id"] = self.last_correlation_id
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def dispatch(self, handler: BaseHTTPRequestHandler, path: str, query: dict, body: Any) -> tuple:
        """(status, payload) for the request: token check, injected failures, then the route."""
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            raise ApiError(401, "unauthorized", "unable to authenticate")
        for failure in self.failures:
            if failure[0] == handler.command and failure[1] == path and failure[3] != 0:
                failure[3] = None if failure[3] is None else failure[3] - 1
                raise failure[2]
        for method, pattern, route in self.routes:
            match = pattern.match(path)
            if method == handler.command and match:
                return route(query, body, *[int(g) for g in match.groups()])
        raise ApiError(404, "not_found", f"no route {handler.command} {path}")

    # --- generic list and get ---------------------------------------------------------------------
    def list_of(self, key: str, items: List[dict]):
        """A list route over `items`, filtered by name, fingerprint and label_selector, paginated."""
        def route(query: dict, body: Any) -> tuple:
            return _page(key, [i for i in items if all(
                str(i.get(field)) == query[field][0] for field in ("name", "fingerprint") if field in query
            ) and _matches(i.get("labels") or {}, query.get("label_selector", [""])[0])], query)
        return route

    def one_of(self, key: str, items: List[dict]):
        """A GET-by-id route over `items`."""
        def route(query: dict, body: Any, ident: int) -> tuple:
            return 200, {key: self.find(items, ident, key)}
        return route

    @staticmethod
    def find(items: List[dict], ident: int, what: str) -> dict:
        """The item with id `ident`, or a 404 not_found answer."""
        for item in items:
            if item["id"] == ident:
                return item
        raise ApiError(404, "not_found", f"{what} with ID '{ident}' not found")

    def action(self, command: str, resources: List[dict], on_done=None) -> dict:
        """A new running action; it succeeds (and calls `on_done`) after `polls_until_done` GETs."""
        action = {"id": next(self.ids), "command": command, "status": "running", "progress": 0,
                  "started": NOW, "finished": None, "resources": resources, "error": None}
        self.actions[action["id"]] = {"action": action, "polls": self.polls_until_done, "on_done": on_done}
        return dict(action)

    def get_action(self, query: dict, body: Any, ident: int) -> tuple:
        entry = self.actions.get(ident) or self.find([], ident, "action")
        if entry["polls"] > 0:
            entry["polls"] -= 1
        elif entry["action"]["status"] == "running":
            entry["action"].update(status="success", progress=100, finished=NOW)
            if entry["on_done"]:
                entry["on_done"]()
        return 200, {"action": entry["action"]}

    # --- resources --------------------------------------------------------------------------------
    def _server_type(self, ident, name, arch, cores, memory, disk, eu, other, offered) -> dict:
        prices = [{"location": loc, "price_hourly": _price(f"{float(eu if loc in EU else other) / 730:.4f}"),
                   "price_monthly": _price(eu if loc in EU else other), "included_traffic": 21990232555520,
                   "price_per_tb_traffic": _price("1.00")} for loc in offered]
        locations = [{"id": loc["id"], "name": loc["name"], "deprecation": None, "available": True,
                      "recommended": True} for loc in self.locations if loc["name"] in offered]
        return {"id": ident, "name": name, "description": name.upper(), "category": "shared",
                "cores": cores, "memory": memory, "disk": disk, "deprecated": False, "deprecation": None,
                "prices": prices, "storage_type": "local", "cpu_type": "shared", "architecture": arch,
                "locations": locations}

    def pricing(self, query: dict, body: Any) -> tuple:
        primary_ips = [{"type": "ipv4", "prices": [{"location": loc, "price_hourly": _price("0.0008"),
                                                    "price_monthly": _price("0.50")} for loc in ALL]}]
        server_types = [{"id": t["id"], "name": t["name"], "prices": t["prices"]} for t in self.server_types]
        return 200, {"pricing": {"currency": "EUR", "vat_rate": "19.00", "primary_ips": primary_ips,
                                 "server_types": server_types}}

    def images(self, query: dict, body: Any) -> tuple:
        arch = query.get("architecture", ["x86"])[0]
        image = {"id": 114690387 if arch == "x86" else 114690389, "type": "system", "status": "available",
                 "name": "debian-12", "description": "Debian 12", "image_size": None, "disk_size": 5,
                 "created": NOW, "created_from": None, "bound_to": None, "os_flavor": "debian",
                 "os_version": "12", "rapid_deploy": True, "protection": {"delete": False},
                 "deprecated": None, "deleted": None, "labels": {}, "architecture": arch}
        return _page("images", [image] if query.get("name", ["debian-12"])[0] == "debian-12" else [], query)

    def create_ssh_key(self, query: dict, body: dict) -> tuple:
        fingerprint = md5_fingerprint(body["public_key"])
        for key in self.ssh_keys:
            if key["name"] == body["name"] or key["fingerprint"] == fingerprint:
                raise ApiError(409, "uniqueness_error", "SSH key with the same name or fingerprint exists")
        key = {"id": next(self.ids), "name": body["name"], "fingerprint": fingerprint,
               "public_key": body["public_key"], "labels": body.get("labels") or {}, "created": NOW}
        self.ssh_keys.append(key)
        return 201, {"ssh_key": key}

    @staticmethod
    def _rules(rules: List[dict]) -> List[dict]:
        for rule in rules:
            if rule["direction"] == "in" and not rule.get("source_ips"):
                raise ApiError(422, "invalid_input", "invalid input in field 'rules'",
                               {"fields": [{"name": "rules", "messages": ["source_ips missing"]}]})
        return [{"description": r.get("description"), "direction": r["direction"], "protocol": r["protocol"],
                 "port": r.get("port"), "source_ips": r.get("source_ips", []),
                 "destination_ips": r.get("destination_ips", [])} for r in rules]

    def create_firewall(self, query: dict, body: dict) -> tuple:
        if any(f["name"] == body["name"] for f in self.firewalls):
            raise ApiError(409, "uniqueness_error", "firewall with the same name already exists")
        firewall = {"id": next(self.ids), "name": body["name"], "labels": body.get("labels") or {},
                    "created": NOW, "rules": self._rules(body.get("rules") or []), "applied_to": []}
        self.firewalls.append(firewall)
        return 201, {"firewall": firewall, "actions": []}

    def set_rules(self, query: dict, body: dict, ident: int) -> tuple:
        firewall = self.find(self.firewalls, ident, "firewall")
        firewall["rules"] = self._rules(body["rules"])
        resources = [{"id": firewall["id"], "type": "firewall"}]
        return 201, {"actions": [self.action("set_firewall_rules", resources)]}

    def apply_to_resources(self, query: dict, body: dict, ident: int) -> tuple:
        firewall = self.find(self.firewalls, ident, "firewall")
        actions = []
        for item in body["apply_to"]:
            server = self.find(self.servers, item["server"]["id"], "server")
            firewall["applied_to"].append({"type": "server", "server": {"id": server["id"]}})
            server["public_net"]["firewalls"].append({"id": firewall["id"], "status": "applied"})
            actions.append(self.action("apply_firewall", [{"id": server["id"], "type": "server"}]))
        return 201, {"actions": actions}

    def create_server(self, query: dict, body: dict) -> tuple:
        if any(s["name"] == body["name"] for s in self.servers):
            raise ApiError(409, "uniqueness_error", "server name is already used")
        kind = next((t for t in self.server_types if body["server_type"] in (t["id"], t["name"])), None)
        location = next((x for x in self.locations if body.get("location") in (x["id"], x["name"])), None)
        if kind is None or location is None or location["name"] not in [x["name"] for x in kind["locations"]]:
            raise ApiError(422, "invalid_input", "unsupported location for server type")
        n = next(self.ids)
        server = {"id": n, "name": body["name"], "status": "initializing", "created": NOW,
                  "public_net": {"ipv4": {"id": n + 1, "ip": f"203.0.113.{n % 250 + 1}", "blocked": False,
                                          "dns_ptr": "static.example"},
                                 "ipv6": {"id": n + 2, "ip": f"2001:db8:{n:x}::/64", "blocked": False,
                                          "dns_ptr": []},
                                 "floating_ips": [], "firewalls": []},
                  "private_net": [], "server_type": kind, "location": location,
                  "datacenter": {"id": location["id"], "name": f"{location['name']}-dc14",
                                 "location": location},
                  "image": {"id": body["image"], "name": "debian-12"}, "iso": None,
                  "rescue_enabled": False, "locked": False, "backup_window": None,
                  "outgoing_traffic": 0, "ingoing_traffic": 0, "included_traffic": 21990232555520,
                  "protection": {"delete": False, "rebuild": False}, "labels": body.get("labels") or {},
                  "volumes": [], "load_balancers": [], "primary_disk_size": kind["disk"],
                  "placement_group": None}
        for item in body.get("firewalls") or []:
            firewall = self.find(self.firewalls, item["firewall"], "firewall")
            firewall["applied_to"].append({"type": "server", "server": {"id": n}})
            server["public_net"]["firewalls"].append({"id": firewall["id"], "status": "applied"})
        self.servers.append(server)
        resources = [{"id": n, "type": "server"}]
        action = self.action("create_server", resources, on_done=lambda: server.update(status="running"))
        return 201, {"server": server, "action": action, "root_password": None,
                     "next_actions": [self.action("start_server", resources)]}

    def delete_server(self, query: dict, body: Any, ident: int) -> tuple:
        server = self.find(self.servers, ident, "server")
        self.servers.remove(server)
        for firewall in self.firewalls:
            firewall["applied_to"] = [a for a in firewall["applied_to"] if a["server"]["id"] != ident]
        return 200, {"action": self.action("delete_server", [{"id": ident, "type": "server"}])}
