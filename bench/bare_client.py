"""The bare client: the requests a validator makes per job, and nothing else, for a CPU
baseline measured against the same simulators in the same run as the engine.

Per job: `new_job` over the WebSocket → claim → ORM query for the code → CreateVm → Status
(`ids`, brief) until running and booted → evaluator `/health` → `/evaluate` → RemoveVm → POST
the result. Plain httpx and json, no models, no store, no state, no retries: what any client
must spend to make these requests in Python.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque

import httpx
from websockets.asyncio.client import connect

from validator_tui.config import ValidatorConfig
from validator_tui.engine.compose import compose_url

HEADERS_JSON = {"Content-Type": "application/json"}


class BareClient:
    """Runs every announced job through the minimal request sequence."""

    def __init__(self, config: ValidatorConfig, *, concurrency: int = 200) -> None:
        self.config = config
        self.platform = httpx.AsyncClient(
            base_url=config.platform_api_url,
            headers={"X-Validator-Hotkey": config.validator_hotkey},
            timeout=30.0,
            trust_env=False,
        )
        self.vmm = httpx.AsyncClient(base_url=config.dstack_vmm_url, timeout=30.0, trust_env=False)
        self.http = httpx.AsyncClient(timeout=30.0, trust_env=False)
        ports = config.host_ports
        #: Host ports not mapped by a VM now (a port goes back once its VM is removed).
        self._ports = deque(range(ports.start, ports.end + 1))
        self._composes: dict[str, str] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = 0
        self.failed = 0

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for client in (self.platform, self.vmm, self.http):
            await client.aclose()

    async def load_composes(self) -> None:
        """The compose file of every active challenge (fetched once, like the engine's cache)."""
        answer = (await self.platform.get("/challenges/active")).json()
        for challenge in answer["challenges"]:
            url = compose_url(challenge["github_repo"], challenge["github_commit"])
            self._composes[challenge["id"]] = (await self.platform.get(url)).text

    async def listen(self) -> None:
        """Take every `new_job` announcement and run the job (until cancelled)."""
        base = self.config.platform_api_url.replace("http://", "ws://")
        url = f"{base}/validators/{self.config.validator_hotkey}/ws"
        headers = {"X-Validator-Hotkey": self.config.validator_hotkey}
        async with connect(url, additional_headers=headers, compression=None) as ws:
            async for frame in ws:
                message = json.loads(frame)
                if message.get("type") == "new_job":
                    data = message.get("data", message)
                    task = asyncio.create_task(self._job(data["job_id"], data["challenge_id"]))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _job(self, job_id: str, challenge_id: str) -> None:
        async with self._slots:
            try:
                await self._run(job_id, challenge_id)
                self.done += 1
            except (httpx.HTTPError, KeyError, ValueError, IndexError) as exc:
                self.failed += 1
                error = {"score": 0.0, "metrics": {}, "logs": [], "execution_time_ms": 0}
                error["error"] = f"bare client: {type(exc).__name__}"
                await self.platform.post(
                    f"/jobs/{job_id}/results",
                    content=json.dumps(error).encode(),
                    headers=HEADERS_JSON,
                )

    async def _run(self, job_id: str, challenge_id: str) -> None:
        started = time.monotonic()
        claim = await self.platform.post(f"/jobs/{job_id}/claim")
        if claim.status_code != 200:
            return
        submission = claim.json()["submission_id"]
        rows = await self.platform.post(
            f"/challenges/{challenge_id}/orm/query",
            content=json.dumps(
                {"query": self.config.orm.submission_query, "params": [submission]}
            ).encode(),
            headers=HEADERS_JSON,
        )
        row = rows.json()["rows"][0]
        port = self._ports.popleft()
        spec, ports = self.config.job_vm, self.config.host_ports
        config = {
            "name": f"bare-job-{job_id}",
            "image": spec.image,
            "compose_file": self._composes[challenge_id],
            "vcpu": spec.vcpu,
            "memory": spec.memory_mb,
            "disk_size": spec.disk_gb,
            "ports": [
                {
                    "protocol": "tcp",
                    "host_port": port,
                    "vm_port": ports.evaluator_port,
                    "host_address": ports.host_address,
                }
            ],
            "user_config": json.dumps({"env": {"JOB_ID": job_id}}),
        }
        try:
            created = await self.vmm.post(
                "/prpc/CreateVm?json", content=json.dumps(config).encode(), headers=HEADERS_JSON
            )
            vm_id = created.json()["id"]
        except BaseException:
            self._ports.append(port)
            raise
        try:
            pause = 0.005
            while True:
                status = await self.vmm.post(
                    "/prpc/Status?json",
                    content=json.dumps({"ids": [vm_id], "brief": True}).encode(),
                    headers=HEADERS_JSON,
                )
                vms = status.json()["vms"]
                if vms and vms[0]["status"] == "running" and vms[0]["boot_progress"] == "done":
                    break
                await asyncio.sleep(pause)
                pause = min(2 * pause, 0.05)
            base = f"http://{ports.host_address}:{port}"
            await self.http.get(f"{base}/health")
            body = {
                "job_id": job_id,
                "challenge_id": challenge_id,
                "submission_id": submission,
                "miner_hotkey": row.get("miner_hotkey", ""),
                "code": row["code"],
            }
            answer = await self.http.post(
                f"{base}/evaluate", content=json.dumps(body).encode(), headers=HEADERS_JSON
            )
            result = answer.json()
        finally:
            await self.vmm.post(
                "/prpc/RemoveVm?json",
                content=json.dumps({"id": vm_id}).encode(),
                headers=HEADERS_JSON,
            )
            self._ports.append(port)
        results = {
            "score": result["score"],
            "metrics": result.get("metrics", {}),
            "logs": result.get("logs", []),
            "execution_time_ms": int(1000 * (time.monotonic() - started)),
            "error": None,
        }
        await self.platform.post(
            f"/jobs/{job_id}/results", content=json.dumps(results).encode(), headers=HEADERS_JSON
        )
