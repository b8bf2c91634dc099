"""Link-local and cloud-metadata addresses are refused unless the workflow allows them."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import Reply, run_path

from lamrunner.definition.workflow import load_workflow
from lamrunner.errors import DefinitionError
from lamrunner.http.netpolicy import is_blocked
from lamrunner.http.transport import AiohttpTransport


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "[fe80::2]",
    ],
)
def test_blocked_addresses(address):
    assert is_blocked(address)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "8.8.8.8", "fd00:ec2::253", "example.com", ""],
)
def test_allowed_addresses(address):
    assert not is_blocked(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/api/token",
        "http://[fe80::1]:8080/",
    ],
)
async def test_metadata_urls_are_refused_before_connecting(wf, url):
    request = {"method": "GET", "url": url, "timeout": "5s", "retry": {"maxAttempts": 3}}
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = await run_path(wf.workflow([wf.request_step("m", request)]))
    assert record["error"]["type"] == "TransportError"
    assert "link-local" in record["error"]["message"]
    assert "allowLinkLocal" in record["error"]["message"]
    assert "after" not in record["error"]["message"]  # refused once, never retried
    assert loop.time() - started < 1


async def test_a_redirect_to_metadata_is_refused(api, wf):
    api.script(
        "GET",
        "/go",
        Reply(status=302, json={}, headers={"Location": "http://169.254.169.254/latest/"}),
    )
    record = await run_path(
        wf.workflow([wf.request_step("r", {"method": "GET", "url": api.url + "/go"})])
    )
    assert record["error"]["type"] == "TransportError"
    assert "169.254.169.254" in record["error"]["message"]


async def test_loopback_stays_allowed(api, wf):
    api.script("GET", "/ok", Reply(json={"ok": True}))
    record = await run_path(
        wf.workflow([wf.request_step("r", {"method": "GET", "url": api.url + "/ok"})])
    )
    assert record["status"] == "SUCCESS"


async def test_workflow_can_allow_link_local(wf):
    """Checked without traffic: tests never send anything beyond loopback."""
    path = wf.workflow([wf.py_step("a", "1")])
    path.write_text(
        path.read_text().replace('"steps"', '"network": {"allowLinkLocal": true}, "steps"', 1)
    )
    workflow = load_workflow(path, env={})
    assert workflow.network.allow_link_local
    async with AiohttpTransport(allow_link_local=True) as open_transport:
        assert type(open_transport._session.connector) is aiohttp.TCPConnector
    async with AiohttpTransport() as guarded:
        assert type(guarded._session.connector).__name__ == "GuardedConnector"


def test_network_key_is_validated(wf):
    path = wf.workflow([wf.py_step("a", "1")])
    path.write_text(
        path.read_text().replace('"steps"', '"network": {"allowLinkLocl": true}, "steps"', 1)
    )
    with pytest.raises(DefinitionError, match="did you mean 'allowLinkLocal'"):
        load_workflow(path, env={})
