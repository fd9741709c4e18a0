"""What the playbooks and the drill ask over the network (tasks/playbooks/remote.py, tasks/drills/public.py):
the origin an edge names is read only from the header the setting edge_origin_header names."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.drills import public
from tasks.playbooks import remote


@pytest.fixture()
def edge_naming_its_origin():
    """A local HTTP server that answers like the lab's edge: 200 with an origin header (X-Some-Origin)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("X-Some-Origin", "10.0.0.3")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_origin_is_read_only_from_the_header_the_setting_names(edge_naming_its_origin):
    """edge_origin_header: product code knows no lab header; empty (Cloudflare) sees no origin at all."""
    url = f"{edge_naming_its_origin}/health"
    assert remote.probe(url, None, "X-Some-Origin")["origin"] == "10.0.0.3"
    assert remote.probe(url, None, "")["origin"] is None
    assert remote.probe(url, None, "X-Lab-Origin")["origin"] is None
    seen = {}
    assert public.request(url, seen=seen, origin_header="X-Some-Origin")[0] == 200 and seen == {"origin": "10.0.0.3"}
    seen = {}
    assert public.request(url, seen=seen)[0] == 200 and seen == {}
    assert public.health(edge_naming_its_origin, "", origin_header="X-Some-Origin") == (True, "HTTP 200 from 10.0.0.3")
