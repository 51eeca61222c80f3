"""CoalescingTransport (api/iot_api/protocol.py): writes within one turn of the event loop leave as one
transport write, in order; close() sends what is pending first; nothing is written after the real
transport closes. Run on a real asyncio loop; the transport underneath is a recorder."""
from __future__ import annotations

import asyncio

from iot_api.protocol import CoalescingTransport


class Recorder:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default


def run(scenario):
    async def main():
        rec = Recorder()
        await scenario(CoalescingTransport(rec, asyncio.get_running_loop()), rec)
        return rec
    return asyncio.run(main())


def test_head_and_body_of_one_turn_leave_as_one_write():
    async def scenario(t, rec):
        t.write(b"HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\n")
        t.write(b'{"stored":1}')
        assert rec.writes == []  # nothing sent until the turn ends
        assert t.get_write_buffer_size() == 56
        await asyncio.sleep(0)
        assert rec.writes == [b'HTTP/1.1 201 Created\r\ncontent-length: 12\r\n\r\n{"stored":1}']
    run(scenario)


def test_writes_of_later_turns_are_separate_and_in_order():
    async def scenario(t, rec):
        t.write(b"a")
        await asyncio.sleep(0)
        t.write(b"b")
        t.write(b"c")
        await asyncio.sleep(0)
        t.write(b"d")
        await asyncio.sleep(0)
        assert rec.writes == [b"a", b"bc", b"d"]
    run(scenario)


def test_close_sends_what_is_pending_then_closes_and_later_writes_are_dropped():
    async def scenario(t, rec):
        t.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        t.close()
        assert rec.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"] and rec.closed
        t.write(b"late")
        await asyncio.sleep(0)
        assert rec.writes == [b"HTTP/1.1 408 Request Timeout\r\n\r\n"]
    run(scenario)


def test_everything_else_is_the_real_transports():
    async def scenario(t, rec):
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        assert t.is_closing() is False
    run(scenario)
