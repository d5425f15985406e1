"""A misbehaving media worker for the tests: it speaks the channel's start-up correctly, then
(``--mode``) ``garbage``: answers the first request with bytes that are not JSON; ``impostor``:
sends a signaling message no worker may send (``kicked``) to the participant who joined;
``silent``: never answers a request (but keeps reporting, so it is not taken for dead); ``ok``:
answers every request at once, as a worker with nothing to negotiate would."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import time

from sfu.worker.channel import Load, Ready, Reply, Send, encode, read_frame


async def run(fd: int, mode: str) -> int:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    if await read_frame(reader) is None:
        return 0
    writer.write(encode(Ready(os.getpid()).to_json()))

    async def report() -> None:
        while True:
            writer.write(encode(Load(time.process_time()).to_json()))
            await asyncio.sleep(0.5)

    reporter = asyncio.create_task(report())
    while (frame := await read_frame(reader)) is not None:
        if mode == "garbage":
            writer.write(struct.pack(">I", 9) + b"not json!")
        elif mode == "impostor":
            message = {"type": "kicked", "reason": "removed"}
            writer.write(encode(Send(frame["room"], frame["sid"], message).to_json()))
        elif mode == "ok":
            writer.write(encode(Reply(frame["id"]).to_json()))
    reporter.cancel()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--mode", required=True)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--channel-fd", type=int, required=True)
    args = p.parse_args()
    sys.exit(asyncio.run(run(args.channel_fd, args.mode)))
