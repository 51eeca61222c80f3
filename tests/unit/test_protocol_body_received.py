"""ApiProtocol marks a request whose whole body arrived before the app asked for it (scope key
BODY_RECEIVED), so post_data skips the API_BODY_TIMEOUT deadline it does not need; a body still on
its way is not marked, and keeps the deadline (tests/integration/test_api_slow_client.py: 408).

uvicorn runs in this process with the api's protocol on a loopback port; the app records the mark it
saw when it started, and raw HTTP goes over a real socket."""
from __future__ import annotations

import asyncio

import uvicorn
from iot_api.protocol import BODY_RECEIVED, ApiProtocol

HEAD = (b"POST /data HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n")
BODY = b'{"type":"temp","value":34,"sensor_id":123}'


def serve_and_send(*parts: bytes, pause: float = 0.3) -> list:
    """The marks the app saw, for one request sent in PARTS, PAUSE seconds apart."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope.get(BODY_RECEIVED, False))
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, http=ApiProtocol, lifespan="off",
                                               log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i, part in enumerate(parts):
            if i:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        server.should_exit = True
        await task
        return status

    status = asyncio.run(main())
    assert status.startswith(b"HTTP/1.1 201"), status
    return seen


def test_a_body_that_came_with_its_headers_is_marked():
    assert serve_and_send(HEAD % len(BODY) + BODY) == [True]


def test_a_body_still_on_its_way_is_not_marked():
    assert serve_and_send(HEAD % len(BODY), BODY) == [False]
    assert serve_and_send(HEAD % len(BODY) + BODY[:10], BODY[10:]) == [False]
