"""Async client of the dstack VMM management API (pRPC JSON over HTTP, TCP or unix socket).

Every RPC is `POST /prpc/<Method>?json`. dstack errors (HTTP 400 `{"error": …}`) become
`VmmError`, 401 becomes `VmmError("unauthorized: …")`, other statuses `ApiError`, transport
failures `NotSent` / `AnswerLost` (both `NetworkError`), unreadable bodies `DecodeError`. Every
RPC has a total deadline (the client's timeout). Nothing is retried here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from validator_tui.clients.errors import ApiError, DecodeError, NetworkError, VmmError
from validator_tui.clients.pool import POOL_LIMITS, PooledClient, http_transport
from validator_tui.clients.transport import Answer, RequestObserver, send
from validator_tui.models.vmm import (
    CreateVmResponse,
    GetInfoResponse,
    GetMetaResponse,
    GpuInfo,
    ImageInfo,
    ListGpusResponse,
    ListImagesResponse,
    StatusRequest,
    StatusResponse,
    VersionInfo,
    VmConfiguration,
    VmInfo,
)
from validator_tui.sanitize import clean_line

HEARTBEAT = "[vmm heartbeat]"
UNAUTHORIZED = "401 unauthorized: check dstack_vmm_token"
#: Longest log line kept from a VM's log stream (the rest of a longer line is dropped).
MAX_LOG_LINE_BYTES = 64 * 1024
_JSON_HEADERS = {"Content-Type": "application/json"}
_EMPTY_BODY = b"{}"
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _transport_for(url: str, limits: httpx.Limits) -> tuple[httpx.AsyncHTTPTransport, str]:
    """The transport and base URL for `http(s)://host:port` or `unix:/path/to/vmm.sock`."""
    if url.startswith("unix:"):
        path = url.removeprefix("unix:").removeprefix("//")
        return http_transport(limits, uds=path), "http://localhost"
    return http_transport(limits), url.rstrip("/")


def _error_text(response: Answer | httpx.Response) -> str:
    """dstack's `{"error": …}` text, or the raw body when it is not that shape."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return response.text
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else response.text


class VmmClient(PooledClient):
    """One pooled HTTP connection set to a dstack VMM. The token is never logged or shown."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        observer: RequestObserver | None = None,
        host: str = "",
    ) -> None:
        self.url = url
        #: How errors name this server: `VMM unix:/run/dstack/vmm.sock`, or with the name of
        #: its host in a pool of several: `VMM gpu-2 (http://10.0.0.2:11530)`.
        self.name = (
            f"VMM {clean_line(host, 40)} ({clean_line(url, 200)})"
            if host
            else f"VMM {clean_line(url, 200)}"
        )
        self._timeout = timeout
        #: Told about every RPC (the engine watches the VMM's health with it).
        self.observer = observer
        transport, base_url = _transport_for(url, POOL_LIMITS)
        self._token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            transport=transport, base_url=base_url, headers=headers, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"VmmClient(url={self.url!r})"

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> Any:
        """POST one RPC (whole request bounded by the timeout) and return its decoded JSON
        result (None for Empty responses). NotSent: the VMM never saw it; AnswerLost: it may
        have acted on it."""
        content = _EMPTY_BODY if body is None else json.dumps(body).encode()
        response = await send(
            self._http,
            "POST",
            f"/prpc/{method}?json",
            f"{self.name} {method}",
            deadline=self._timeout,
            observer=self.observer,
            content=content,
            headers=_JSON_HEADERS,
        )
        if response.status_code == 200:
            try:
                return response.json()
            except (ValueError, RecursionError) as exc:
                raise DecodeError(f"{self.name} {method}: response is not JSON") from exc
        self._raise_for(response, method)

    def _raise_for(self, response: Answer | httpx.Response, what: str) -> NoReturn:
        """Raise the typed error for a non-200 answer (the token masked, should it be echoed)."""
        if response.status_code == 400:
            raise VmmError(clean_line(self._redact(_error_text(response)), 500))
        if response.status_code == 401:
            raise VmmError(f"{self.name}: {UNAUTHORIZED}")
        raise ApiError(
            response.status_code, self._redact(response.text), what=f"{self.name} {what}"
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "********") if self._token else text

    def _parse(self, model: type[_ModelT], data: Any, method: str) -> _ModelT:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise DecodeError(
                f"{self.name} {method}: unexpected response ({exc.error_count()} errors)"
            ) from exc

    async def create_vm(self, config: VmConfiguration) -> str:
        """Create (and, unless `config.stopped`, boot) a VM; returns its id."""
        data = await self._call("CreateVm", config.to_request())
        return self._parse(CreateVmResponse, data, "CreateVm").id

    async def get_info(self, vm_id: str) -> VmInfo | None:
        """The VM's full info, or None when the VMM does not know the id."""
        data = await self._call("GetInfo", {"id": vm_id})
        answer = self._parse(GetInfoResponse, data, "GetInfo")
        return answer.info if answer.found else None

    async def start_vm(self, vm_id: str) -> None:
        """Start a VM (idempotent)."""
        await self._call("StartVm", {"id": vm_id})

    async def stop_vm(self, vm_id: str) -> None:
        """Hard-kill a VM (idempotent)."""
        await self._call("StopVm", {"id": vm_id})

    async def shutdown_vm(self, vm_id: str) -> None:
        """Ask the guest to power off; fails when the guest agent is unreachable."""
        await self._call("ShutdownVm", {"id": vm_id})

    async def remove_vm(self, vm_id: str) -> None:
        """Remove a VM; the VMM reports it `removing` until cleanup finishes."""
        await self._call("RemoveVm", {"id": vm_id})

    async def status(
        self,
        *,
        ids: Sequence[str] = (),
        brief: bool = True,
        keyword: str = "",
        page: int = 0,
        page_size: int = 0,
    ) -> StatusResponse:
        """List VMs, oldest first; `page`/`page_size` 0 means all, `total` counts before paging."""
        request = StatusRequest(
            ids=list(ids), brief=brief, keyword=keyword, page=page, page_size=page_size
        )
        data = await self._call("Status", request.to_request())
        return self._parse(StatusResponse, data, "Status")

    async def get_meta(self) -> GetMetaResponse:
        """KMS, gateway and resource limits of this VMM."""
        return self._parse(GetMetaResponse, await self._call("GetMeta"), "GetMeta")

    async def version(self) -> VersionInfo:
        """The VMM's version and git revision."""
        return self._parse(VersionInfo, await self._call("Version"), "Version")

    async def list_images(self) -> list[ImageInfo]:
        """The guest images this VMM can boot."""
        data = await self._call("ListImages")
        return self._parse(ListImagesResponse, data, "ListImages").images

    async def list_gpus(self) -> list[GpuInfo]:
        """The GPUs this VMM can attach (empty when GPU passthrough is off)."""
        data = await self._call("ListGpus")
        return self._parse(ListGpusResponse, data, "ListGpus").gpus

    async def logs(
        self,
        vm_id: str,
        *,
        follow: bool = False,
        lines: int = 200,
        ansi: bool = False,
        channel: str = "serial",
    ) -> AsyncIterator[str]:
        """Yield the VM's log lines (UTF-8 with replacement, newline stripped, unsanitised).

        With `follow` the stream lasts until the server closes it or the consumer stops
        iterating (the response is closed then). Heartbeat lines are skipped. An unknown VM
        raises `VmmError("VM not found")`.
        """
        params = {
            "id": vm_id,
            "follow": "true" if follow else "false",
            "ansi": "true" if ansi else "false",
            "lines": str(lines),
            "ch": channel,
        }
        timeout = httpx.Timeout(self._timeout, read=None) if follow else self._timeout
        try:
            async with self._http.stream("GET", "/logs", params=params, timeout=timeout) as resp:
                if resp.status_code == 404:
                    raise VmmError("VM not found")
                if resp.status_code != 200:
                    await resp.aread()
                    self._raise_for(resp, "logs")
                async for line in _split_lines(resp.aiter_bytes()):
                    if line != HEARTBEAT:
                        yield line
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{self.name} logs: timed out") from exc
        except httpx.HTTPError as exc:
            detail = clean_line(str(exc) or type(exc).__name__, 300)
            raise NetworkError(f"{self.name} logs: {detail}") from exc


async def _split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Re-split a byte stream into decoded lines without their line terminators.

    A line longer than MAX_LOG_LINE_BYTES is cut there (the rest of it is dropped), so a guest
    printing without newlines cannot make this buffer grow without bound.
    """
    pending = b""
    skipping = False  # inside an over-long line whose head was already yielded
    async for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        for raw in complete:
            if not skipping:
                yield _decode_line(raw)
            skipping = False
        if len(pending) > MAX_LOG_LINE_BYTES:
            if not skipping:
                yield _decode_line(pending[:MAX_LOG_LINE_BYTES])
            skipping, pending = True, b""
    if pending and not skipping:
        yield _decode_line(pending)


def _decode_line(raw: bytes) -> str:
    return raw.removesuffix(b"\r").decode("utf-8", "replace")
