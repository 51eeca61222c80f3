"""The api's /write client (api/iot_api/write_client.py) against real sockets: a small asyncio server
on loopback that answers as told (InfluxDB itself is in the integration and e2e layers), to reach the
cases InfluxDB rarely shows on demand: an idle connection closed, an answer cut short, no answer."""
from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest
from iot_api.write_client import WriteClient, WriteFailed

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\n\r\n"


class Server:
    """Reads one request at a time (head + Content-Length body) and lets `answer` reply."""

    def __init__(self, answer):
        self.answer = answer  # async (server, reader, writer, n) -> keep the connection open?
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = self.open = self.most_open = 0
        self.handlers: set[asyncio.Task] = set()

    async def start(self, ssl_context=None):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader, writer):
        self.handlers.add(asyncio.current_task())
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append((head, await reader.readexactly(length)))
                if not await self.answer(self, reader, writer, len(self.requests)):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def stop(self):
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)


async def _answer_204(server, reader, writer, n):
    writer.write(NO_CONTENT)
    await writer.drain()
    return True


def _client(server, scheme="http", **kwargs):
    kwargs.setdefault("timeout_s", 2.0)
    return WriteClient(f"{scheme}://127.0.0.1:{server.port}", {"db": "iot", "rp": "forever", "precision": "ns"},
                       kwargs.pop("auth", None), **kwargs)


def _post_all(answer, bodies, pause_s: float = 0.0, **client_kwargs):
    """Post `bodies` one after the other to a Server answering with `answer`: (server, answers)."""
    async def run():
        server = await Server(answer).start()
        client = _client(server, **client_kwargs)
        answers = []
        for body in bodies:
            await asyncio.sleep(pause_s)
            answers.append(await client.post(body))
        await client.close()
        await server.stop()
        return server, answers

    return asyncio.run(run())


def test_a_request_is_what_influxdb_expects_and_connections_are_kept():
    bodies = [b"data,sensor_id=a,type=temp value=%d 1\n" % i for i in range(20)]
    server, answers = _post_all(_answer_204, bodies, auth=("writer", "s3cret:x"))
    assert answers == [(204, b"")] * 20
    assert server.connections == 1  # kept alive, not one connection per write
    head, body = server.requests[7]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /write?db=iot&rp=forever&precision=ns HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Content-Type: text/plain; charset=utf-8" in lines
    assert "Authorization: Basic d3JpdGVyOnMzY3JldDp4" in lines  # base64("writer:s3cret:x")
    assert "Content-Length: 37" in lines and body == b"data,sensor_id=a,type=temp value=7 1\n"


def test_a_path_prefix_and_odd_names_are_kept_and_quoted():
    async def run():
        server = await Server(_answer_204).start()
        client = WriteClient(f"http://127.0.0.1:{server.port}/influx/", {"db": "my db", "rp": "r&p"}, None, 2.0)
        await client.post(b"x")
        await client.close()
        await server.stop()
        return server.requests[0][0].split(b"\r\n")[0]

    assert asyncio.run(run()) == b"POST /influx/write?db=my+db&rp=r%26p HTTP/1.1"


def test_an_idle_connection_closed_by_influxdb_is_replaced_once():
    async def close_after_answering(server, reader, writer, n):
        writer.write(NO_CONTENT)
        await writer.drain()
        return False  # as InfluxDB restarting, or its idle timeout: closed without a word

    server, results = _post_all(close_after_answering, [b"x"] * 3, pause_s=0.05)  # each close arrived
    assert results == [(204, b"")] * 3
    assert server.connections == 3 and len(server.requests) == 3


def test_a_stale_connection_is_retried_once_even_when_its_close_is_not_seen_yet():
    """The close of an idle connection may cross the next request: that request gets no answer and
    goes once more on a new connection (a point written twice overwrites itself)."""
    async def drop_the_second_request(server, reader, writer, n):
        if n == 2:
            return False  # on the kept-alive connection: closed unanswered
        return await _answer_204(server, reader, writer, n)

    server, answers = _post_all(drop_the_second_request, [b"a", b"b"])
    assert answers == [(204, b"")] * 2
    assert [body for _, body in server.requests] == [b"a", b"b", b"b"]
    assert server.connections == 2


def test_a_fresh_connection_closed_without_an_answer_fails_and_is_not_retried():
    async def hang_up(server, reader, writer, n):
        return False

    async def run():
        server = await Server(hang_up).start()
        client = _client(server)
        with pytest.raises(WriteFailed, match="closed the connection without answering"):
            await client.post(b"x")
        await server.stop()
        return server

    assert asyncio.run(run()).connections == 1


def test_a_chunked_error_answer_is_read_whole_and_the_connection_kept():
    error = b'{"error":"partial write: field type conflict: input field \\"value\\" is type integer"}'

    async def chunked_400(server, reader, writer, n):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (10, error[:10]) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(error) - 10, error[10:]))
        await writer.drain()
        return True

    server, answers = _post_all(chunked_400, [b"x", b"y"])
    assert answers == [(400, error)] * 2
    assert server.connections == 1


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped():
    async def never(server, reader, writer, n):
        await reader.read()  # until the client hangs up
        return False

    async def run():
        server = await Server(never).start()
        client = _client(server, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await client.post(b"x")
        took = loop.time() - started
        await asyncio.sleep(0.1)
        open_after = server.open
        await server.stop()
        return took, open_after

    took, open_after = asyncio.run(run())
    assert 0.25 < took < 1.5
    assert open_after == 0  # not kept: its answer could still arrive and be taken for the next one's


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 204 No", "closed the connection in the middle of its answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"part", "closed the connection in the middle of its answer"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not valid HTTP"),
], ids=["cut-in-status", "cut-in-body", "not-http"])
def test_a_broken_answer_is_a_clear_failure(reply, message):
    async def broken(server, reader, writer, n):
        writer.write(reply)
        await writer.drain()
        return False

    async def run():
        server = await Server(broken).start()
        client = _client(server)
        with pytest.raises(WriteFailed, match=message):
            await client.post(b"x")
        await server.stop()

    asyncio.run(run())


def test_nobody_listening_is_an_os_error():
    async def run():
        server = await Server(_answer_204).start()
        port = server.port
        await server.stop()
        await asyncio.sleep(0.05)
        client = WriteClient(f"http://127.0.0.1:{port}", {"db": "iot"}, None, 2.0)
        with pytest.raises(OSError):
            await client.post(b"x")

    asyncio.run(run())


def test_connections_are_capped_and_waiting_writes_reuse_them():
    async def slow_204(server, reader, writer, n):
        await asyncio.sleep(0.05)
        return await _answer_204(server, reader, writer, n)

    async def run():
        server = await Server(slow_204).start()
        client = _client(server, max_connections=3)
        answers = await asyncio.gather(*(client.post(b"x%d" % i) for i in range(12)))
        await client.close()
        await server.stop()
        return server, answers

    server, answers = asyncio.run(run())
    assert answers == [(204, b"")] * 12
    assert server.most_open == 3 and server.connections == 3


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (Debian's package) is needed to make a test certificate")
def test_https_is_verified_against_the_trusted_certificates(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)

    async def run():
        server = await Server(_answer_204).start(server_side)
        trusting = ssl.create_default_context(cafile=str(cert))
        ok = await _client(server, "https", ssl_context=trusting).post(b"x")
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know this certificate
            await _client(server, "https").post(b"x")
        await server.stop()
        return ok

    assert asyncio.run(run()) == (204, b"")
