"""A transparent TCP proxy on one host's path: delay ± jitter, loss, refused connections, stalls.

This kernel has no ``netem`` qdisc, so what a slow, lossy link does to TCP is made in user space.
The proxy runs inside the host's namespace (``python -m tests.support.netns.proxy PORT CONTROL``);
iptables REDIRECTs the host's TCP there (:mod:`tests.support.netns.impair`), and the proxy reads
each connection's original destination (``SO_ORIGINAL_DST``) and connects to it with
:data:`MARK` on its socket, which the redirect skips. Each direction is a bounded queue; a chunk
read is written ``delay ± jitter`` later, never before the chunk ahead of it (TCP does not reorder),
and with probability ``loss`` a retransmission timeout later still (what a lost segment costs
TCP: it cannot lose bytes); ``refuse`` closes that share of new connections at once; ``stall``
holds every byte until it is lifted. SIGUSR1 rereads the control file (JSON of :class:`Impairment`)
and writes the figures so far beside it (``CONTROL.stats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

MARK = 0x676E66
SO_ORIGINAL_DST = 80
CHUNK = 65536
QUEUE_CHUNKS = 64
"""Chunks waiting per direction; a full queue stops reading (backpressure), memory stays bounded."""
RTO_S = (0.2, 0.6)
"""The extra wait of a lost chunk: Linux's minimum retransmission timeout, and up to three times it."""
CONNECT_TIMEOUT_S = 5.0


@dataclass
class Impairment:
    """What the link does now (all zero: passes everything at once)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    refuse: float = 0.0
    stall: bool = False


@dataclass
class Figures:
    """What the proxy did since it started."""

    connections: int = 0
    refused: int = 0
    chunks: int = 0
    bytes: int = 0
    delayed: int = 0
    lost: int = 0


class Proxy:
    """The proxy's state: the impairment in force and its figures."""

    def __init__(self, port: int, control: Path) -> None:
        self.port, self.control, self.now = port, control, Impairment()
        self.figures = Figures()
        self.unstalled = asyncio.Event()
        self.unstalled.set()

    def reload(self) -> None:
        """Read the control file; write the figures beside it."""
        known = {f.name for f in fields(Impairment)}
        values = json.loads(self.control.read_text() or "{}")
        self.now = Impairment(**{k: v for k, v in values.items() if k in known})
        (self.unstalled.clear if self.now.stall else self.unstalled.set)()
        stats = self.control.with_suffix(".stats")
        stats.with_suffix(".tmp").write_text(json.dumps(asdict(self.figures)))
        stats.with_suffix(".tmp").replace(stats)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One redirected connection: connect to where it was going, then pipe both ways."""
        self.figures.connections += 1
        if random.random() < self.now.refuse:
            self.figures.refused += 1
            writer.close()
            return
        raw = writer.get_extra_info("socket").getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, packed = struct.unpack("!2xH4s8x", raw)
        if port == self.port:  # not redirected: a connection to the proxy itself would loop
            writer.close()
            return
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        upstream.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.get_running_loop().sock_connect(upstream, (socket.inet_ntoa(packed), port))
            up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        except (OSError, TimeoutError):
            upstream.close()
            writer.close()
            return
        await asyncio.gather(self.pipe(reader, up_writer), self.pipe(up_reader, writer))

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer`` through a bounded queue of (due time, chunk)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def read() -> None:
            last = 0.0
            with contextlib.suppress(OSError):
                while data := await reader.read(CHUNK):
                    due = max(last, time.monotonic() + self._delay())
                    if random.random() < self.now.loss:
                        self.figures.lost += 1
                        due += random.uniform(*RTO_S)
                    last = due
                    self.figures.chunks += 1
                    self.figures.bytes += len(data)
                    await queue.put((due, data))
            await queue.put((last, b""))

        async def write() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - time.monotonic()) > 0:
                    self.figures.delayed += 1
                    await asyncio.sleep(wait)
                await self.unstalled.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(read(), write())
        except OSError:
            pass
        finally:
            writer.close()

    def _delay(self) -> float:
        now = self.now
        return max(0.0, now.delay_s + random.uniform(-now.jitter_s, now.jitter_s)) if now.delay_s else 0.0


async def serve(port: int, control: Path) -> None:
    """Serve on every address of this namespace at ``port`` until killed."""
    proxy = Proxy(port, control)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, proxy.reload)
    server = await asyncio.start_server(proxy.handle, "0.0.0.0", port, reuse_address=True)
    proxy.reload()  # the figures file appears: the proxy is serving
    print(f"proxy on {port}, control {control}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
