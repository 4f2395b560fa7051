"""A configured dstack VMM token never shows: not in headless logs (even at DEBUG), not in
`config check` output, not in the state database's bytes, not in any repr/str, not in errors."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.engine import FAST, running, wait_for
from tests.support.hostile import captured_logs
from tests.support.identities import ALICE
from validator_tui.cli import main
from validator_tui.clients.errors import ClientError
from validator_tui.clients.vmm import VmmClient
from validator_tui.config import ValidatorConfig, load_config
from validator_tui.config_io import write_config
from validator_tui.demo import DemoEnvironment
from validator_tui.sim.server import start_server
from validator_tui.sim.vmm import VmmSimulator

TOKEN = "vmm-t0ken-Zq9XfP2kLw8s"


def assert_no_token(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert TOKEN.encode() not in data


async def test_token_stays_out_of_logs_state_and_reprs(tmp_path):
    env = DemoEnvironment(seed=51, jobs_per_minute=0, boot_seconds=0, engine=FAST)
    env.vmms[0] = env.vmm = VmmSimulator(boot_seconds=0, seed=51, token=TOKEN)
    async with env:
        config = env.config.model_copy(
            update={"dstack_vmm_token": SecretStr(TOKEN), "state_dir": str(tmp_path)}
        )
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.DEBUG)
        try:
            with captured_logs() as (text, jsonl):
                async with running(config) as validator:
                    jobs = env.platform.add_jobs(3)
                    await wait_for(lambda: len(env.platform.results()) == 3, 10, "3 results")
                    reprs = [repr(config), str(config), repr(validator.ctx), str(validator.ctx)]
                    reprs += [
                        repr(validator.ctx.hosts["default"].vmm),
                        repr(validator.config.masked()),
                    ]
                    reprs += [repr(event) for event in validator.state.events]
                    reprs += [repr(job) for job in validator.state.jobs.values()]
        finally:
            root.setLevel(level)
        assert all(job["id"] in env.platform.results() for job in jobs)
        assert env.vmm.stats.get("unauthorized", 0) == 0
    assert_no_token(text.getvalue(), jsonl.getvalue(), *reprs)
    files = list(tmp_path.glob("state.sqlite3*"))
    assert files
    assert_no_token(*(path.read_bytes() for path in files))


def test_config_check_masks_the_token(tmp_path, capsys, monkeypatch):
    config = ValidatorConfig(
        validator_hotkey=ALICE, dstack_vmm_token=TOKEN, state_dir=str(tmp_path / "state")
    )
    path = write_config(config, tmp_path / "config.toml")
    assert TOKEN in path.read_text()
    assert load_config(path).dstack_vmm_token.get_secret_value() == TOKEN
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr()
    assert_no_token(out.out, out.err)
    assert '"dstack_vmm_token": "********"' in out.out

    monkeypatch.setenv("DSTACK_VMM_TOKEN", TOKEN)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'validator_hotkey = "nope"\ndstack_vmm_token = ["{TOKEN}"]\n'
        f'[engine]\ndstack_vmm_token = "{TOKEN}"\n'
    )
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr()
    assert "validator_hotkey" in out.err and "engine.dstack_vmm_token: unknown key" in out.err
    assert_no_token(out.out, out.err)


@pytest.fixture
async def echoing_vmm():
    """A broken proxy in front of the VMM that echoes the request's Authorization header."""

    async def answer(request):
        echoed = request.headers.get("authorization", "")
        return JSONResponse({"error": f"bad request with {echoed}"}, status_code=400)

    server = await start_server(Starlette(routes=[Route("/prpc/{m}", answer, methods=["POST"])]))
    yield server.url
    await server.stop()


async def test_token_stays_out_of_vmm_errors(echoing_vmm):
    async with VmmClient(echoing_vmm, TOKEN) as vmm:
        assert_no_token(repr(vmm), str(vmm))
        with pytest.raises(ClientError) as raised:
            await vmm.remove_vm("vm-1")
        assert "bad request with" in str(raised.value)
        assert_no_token(str(raised.value), repr(raised.value))
    simulator = VmmSimulator(token="another-token")
    url = await simulator.start()
    try:
        async with VmmClient(url, TOKEN) as vmm:
            with pytest.raises(ClientError) as raised:
                await vmm.status()
            assert_no_token(str(raised.value), repr(raised.value))
    finally:
        await simulator.stop()
