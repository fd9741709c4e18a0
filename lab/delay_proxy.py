"""A transparent TCP delaying proxy for the lab's latency and jitter faults (test equipment: lab/chaos.py).

Run as ``ip netns exec NS python -m lab.delay_proxy --port P --mark M --delay-ms D [--reply-ms R]
[--jitter-ms J]`` inside the network namespace of the lab host whose connections are delayed. lab/chaos.py
redirects that host's new TCP connections to a destination (nftables ``redirect to :P`` in its nat output
hook) to 127.0.0.1:P; this proxy reads the original destination (SO_ORIGINAL_DST), connects to it with
socket mark M (which the redirect rule skips, so the proxy's own connection is not redirected again) from
the same namespace and address, and relays both directions:

* the bytes the host sends are delivered D ms +/- J ms after they arrived, the answer's bytes R ms +/- J
  ms later (J drawn uniformly per chunk);
* in order: a chunk never overtakes the one before it (TCP cannot reorder; jitter only bunches them);
* a half-close is passed on once every earlier chunk is delivered; a reset or error closes both sides.

This stands in for netem, which this machine's kernel lacks: it delays the TCP byte stream of new
connections, not individual packets (no effect on ICMP or UDP, nor on connections open before the fault).
"""

import argparse
import asyncio
import random
import signal
import socket
import struct
import sys
import time

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h, level SOL_IP


def next_due(arrival, last, delay, jitter, rng=random):
    """When a chunk that arrived at `arrival` is delivered: arrival + delay +/- jitter, never before the
    previous chunk's delivery `last` nor before its own arrival."""
    return max(arrival, arrival + delay + rng.uniform(-jitter, jitter), last)


def due_times(arrivals, delay, jitter, rng=random):
    """next_due over a sequence of arrivals (for the unit tests)."""
    out, last = [], float("-inf")
    for arrival in arrivals:
        last = next_due(arrival, last, delay, jitter, rng)
        out.append(last)
    return out


def original_destination(sock):
    """(ip, port) the redirected connection was opened to."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack("!2xH4s8x", raw)
    return socket.inet_ntoa(packed), port


async def pump(reader, writer, delay, jitter):
    """Copy reader -> writer, each chunk delayed per due_times; half-close at EOF."""
    queue = asyncio.Queue()

    async def read():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic(), data))
                if not data:
                    return
        except OSError:
            await queue.put((time.monotonic(), None))

    reading = asyncio.ensure_future(read())
    last = float("-inf")
    try:
        while True:
            arrival, data = await queue.get()
            last = next_due(arrival, last, delay, jitter)
            wait = last - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                writer.close()
                return
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except OSError:
        writer.close()
    finally:
        reading.cancel()


async def handle(client_reader, client_writer, args):
    sock = client_writer.get_extra_info("socket")
    try:
        host, port = original_destination(sock)
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, args.mark)
        upstream.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(upstream, (host, port)), 10)
        server_reader, server_writer = await asyncio.open_connection(sock=upstream)
    except (OSError, asyncio.TimeoutError):
        client_writer.close()  # the client sees a reset/close, as with an unreachable peer
        return
    await asyncio.gather(pump(client_reader, server_writer, args.delay_ms / 1000, args.jitter_ms / 1000),
                         pump(server_reader, client_writer, args.reply_ms / 1000, args.jitter_ms / 1000),
                         return_exceptions=True)
    for writer in (client_writer, server_writer):
        writer.close()


async def serve(args):
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), "127.0.0.1", args.port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    sys.stderr.write(f"delay_proxy: 127.0.0.1:{args.port} delay {args.delay_ms} ms, reply {args.reply_ms} ms, "
                     f"jitter {args.jitter_ms} ms\n")
    async with server:
        await stop.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.delay_proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 the redirect rule points at")
    parser.add_argument("--mark", type=lambda v: int(v, 0), required=True,
                        help="socket mark of the proxy's own connections (the redirect rule skips it)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay of the bytes the host sends")
    parser.add_argument("--reply-ms", type=float, default=0.0, help="delay of the bytes the peer answers")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="+/- uniform jitter per chunk")
    parser.add_argument("--name", default="", help="a label for `ps` (lab leftovers are found by it)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
