"""Wire models of the dstack VMM pRPC API (JSON form), per spec/dstack-vmm.md.

Responses are tolerant (unknown fields ignored, defaults for absent ones). Requests serialise
with proto snake_case keys; optional fields that dstack treats "absent = default" are omitted
when unset (`to_request`), so `gpus` is only sent when set.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VmmModel(BaseModel):
    """Base of every VMM message: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    def to_request(self) -> dict[str, Any]:
        """The JSON request body: snake_case keys, `None` fields omitted."""
        return self.model_dump(mode="json", exclude_none=True)


class PortMapping(VmmModel):
    """One host→VM port forward; dstack turns an empty `host_address` into 127.0.0.1."""

    protocol: str = "tcp"
    host_port: int = 0
    vm_port: int = 0
    host_address: str = "127.0.0.1"


class GpuSpec(VmmModel):
    slot: str = ""


class GpuConfig(VmmModel):
    """`attach_mode` is `listed` (the `gpus` slots) or `all`."""

    attach_mode: str = "listed"
    gpus: list[GpuSpec] = Field(default_factory=list)


class NetworkSpec(VmmModel):
    mode: str = "user"
    bridge_name: str = ""


class VmConfiguration(VmmModel):
    """CreateVm's request, echoed as `VmInfo.configuration`. memory in MB, disk_size in GB."""

    name: str
    image: str
    compose_file: str
    vcpu: int
    memory: int
    disk_size: int
    ports: list[PortMapping] = Field(default_factory=list)
    encrypted_env: str = ""
    app_id: str | None = None
    user_config: str = ""
    hugepages: bool = False
    pin_numa: bool = False
    gpus: GpuConfig | None = None
    kms_urls: list[str] = Field(default_factory=list)
    gateway_urls: list[str] = Field(default_factory=list)
    stopped: bool = False
    no_tee: bool = False
    networking: dict[str, Any] | None = None
    networks: list[NetworkSpec] | None = None
    simulated_tee: str | None = None


class VmEvent(VmmModel):
    """One entry of a VM's event ring buffer; `timestamp` is in milliseconds."""

    event: str = ""
    body: str = ""
    timestamp: int = 0


class NetInterface(VmmModel):
    mode: str = ""
    backend: str = ""
    mac: str = ""
    bridge_name: str | None = None
    netdev_id: str = ""


class VmInfo(VmmModel):
    """A VM as GetInfo/Status report it; `uptime`/`exited_at` are durations or "never"."""

    id: str
    name: str = ""
    status: str = ""
    uptime: str = ""
    app_url: str | None = None
    app_id: str = ""
    instance_id: str | None = None
    configuration: VmConfiguration | None = None
    exited_at: str | None = None
    boot_progress: str = ""
    boot_error: str = ""
    shutdown_progress: str = ""
    image_version: str = ""
    events: list[VmEvent] = Field(default_factory=list)
    interfaces: list[NetInterface] = Field(default_factory=list)

    @property
    def is_ready(self) -> bool:
        """Ready as dstack's own tools define it: running and boot progress `done`."""
        return self.status == "running" and self.boot_progress == "done"

    @property
    def has_failed(self) -> bool:
        """Failed as dstack's tools define it: a boot error, or exited/stopped/removing."""
        return bool(self.boot_error) or self.status in ("exited", "stopped", "removing")


class StatusRequest(VmmModel):
    """Status filter: exact `ids`, substring `keyword`; 1-based `page`, 0 = everything."""

    ids: list[str] = Field(default_factory=list)
    brief: bool = False
    keyword: str = ""
    page: int = 0
    page_size: int = 0


class StatusResponse(VmmModel):
    vms: list[VmInfo] = Field(default_factory=list)
    port_mapping_enabled: bool = False
    total: int = 0


class GetInfoResponse(VmmModel):
    found: bool = False
    info: VmInfo | None = None


class CreateVmResponse(VmmModel):
    id: str


class ImageInfo(VmmModel):
    """An image; `description` is the image's metadata JSON as a string."""

    name: str
    description: str = ""
    version: str = ""
    is_dev: bool = False


class ListImagesResponse(VmmModel):
    images: list[ImageInfo] = Field(default_factory=list)


class GpuInfo(VmmModel):
    """One GPU the VMM can pass through; `is_free` is false while a running VM holds it."""

    slot: str
    product_id: str = ""
    description: str = ""
    is_free: bool = False


class ListGpusResponse(VmmModel):
    gpus: list[GpuInfo] = Field(default_factory=list)
    allow_attach_all: bool = False


class VersionInfo(VmmModel):
    version: str = ""
    rev: str = ""


class KmsSettings(VmmModel):
    url: str = ""
    urls: list[str] = Field(default_factory=list)


class GatewaySettings(VmmModel):
    url: str = ""
    base_domain: str = ""
    port: int = 0
    agent_port: int = 0
    urls: list[str] = Field(default_factory=list)


class MetaResources(VmmModel):
    max_cvm_number: int = 0
    max_allocable_vcpu: int = 0
    max_allocable_memory_in_mb: int = 0


class GetMetaResponse(VmmModel):
    kms: KmsSettings | None = None
    gateway: GatewaySettings | None = None
    resources: MetaResources = Field(default_factory=MetaResources)
    networking: dict[str, Any] | None = None
