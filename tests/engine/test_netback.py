"""The asyncio-native network backend under httpx, against small servers on loopback: kept-alive
connections the server closed, TLS, bodies larger than the read buffer's high-water mark,
read timeouts, Unix sockets."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from validator_tui.clients.netback import READ_HIGH_WATER
from validator_tui.clients.pool import http_transport

TLS_DIR = Path(__file__).parent.parent / "support" / "tls"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request's head (these tests send no bodies)."""
    return await reader.readuntil(b"\r\n\r\n")


def answer(body: bytes, *, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n"
    return head % (len(body), connection) + body


@asynccontextmanager
async def serving(
    handler: Handler, *, tls: ssl.SSLContext | None = None, unix: Path | None = None
) -> AsyncIterator[str]:
    """A server on an ephemeral loopback port (or `unix`); yields its base URL."""
    if unix is not None:
        server = await asyncio.start_unix_server(handler, path=str(unix))
        url = "http://localhost"
    else:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.close()
        await server.wait_closed()


async def test_a_kept_alive_connection_the_server_closed_is_not_reused():
    connections = 0

    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        writer.close()

    async with (
        serving(one_answer_then_close) as url,
        httpx.AsyncClient(transport=http_transport(trust_env=False)) as client,
    ):
        bodies = []
        for _ in range(3):
            bodies.append((await client.get(url)).content)
            await asyncio.sleep(0.05)
    assert bodies == [b"first"] * 3
    assert connections == 3


async def test_a_kept_alive_connection_is_reused():
    connections = 0

    async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer(b"again"))

    async with (
        serving(keep_answering) as url,
        httpx.AsyncClient(transport=http_transport(trust_env=False)) as client,
    ):
        bodies = [(await client.get(url)).content for _ in range(5)]
    assert bodies == [b"again"] * 5
    assert connections == 1


async def test_tls_with_the_environment_trust_store(monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_DIR / "cert.pem"))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(TLS_DIR / "cert.pem", TLS_DIR / "key.pem")

    async def secret(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(answer(b"over tls", close=True))
        await writer.drain()
        writer.close()

    async with (
        serving(secret, tls=server_tls) as url,
        httpx.AsyncClient(transport=http_transport()) as client,
    ):
        response = await client.get(url)
        assert response.content == b"over tls"
        assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None


async def test_tls_refuses_an_untrusted_certificate(monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(TLS_DIR / "cert.pem", TLS_DIR / "key.pem")

    async def never_reached(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        writer.close()

    async with (
        serving(never_reached, tls=server_tls) as url,
        httpx.AsyncClient(transport=http_transport(trust_env=False)) as client,
    ):
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(url)


async def test_a_body_larger_than_the_read_buffer_arrives_whole():
    body = bytes(range(256)) * (READ_HIGH_WATER * 8 // 256)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(answer(body, close=True))
        await writer.drain()
        writer.close()

    async with (
        serving(big) as url,
        httpx.AsyncClient(transport=http_transport(trust_env=False)) as client,
        client.stream("GET", url) as response,
    ):
        received = bytearray()
        async for chunk in response.aiter_raw():
            received += chunk
            await asyncio.sleep(0)
    assert bytes(received) == body


async def test_a_server_that_never_answers_times_out():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        await asyncio.sleep(5)

    async with (
        serving(silent) as url,
        httpx.AsyncClient(transport=http_transport(trust_env=False), timeout=0.3) as client,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url)


async def test_a_unix_socket(tmp_path):
    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        await read_request(reader)
        writer.write(answer(b"unix", close=True))
        await writer.drain()
        writer.close()

    path = tmp_path / "s.sock"
    async with (
        serving(hello, unix=path) as url,
        httpx.AsyncClient(transport=http_transport(uds=str(path), trust_env=False)) as client,
    ):
        assert (await client.get(url)).content == b"unix"
