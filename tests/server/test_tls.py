"""TLS: ``--tls-cert/--tls-key`` serve the Task API over https and workers over wss."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from harness import RawWorker, fast_config
from treadle import Orchestrator, create_app
from treadle.app import ssl_context, stop


async def test_tasks_and_workers_over_tls(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(cert)
    certificate.private_key_pem.write_to_path(key)
    config = fast_config(tmp_path, tls_cert=cert, tls_key=key, port=0)
    server_context = ssl_context(config)
    assert server_context is not None
    orchestrator = Orchestrator(config)
    runner = web.AppRunner(create_app(config, orchestrator), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    port = runner.addresses[0][1]
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    try:
        connector = aiohttp.TCPConnector(ssl=client_context)
        async with aiohttp.ClientSession(connector=connector) as http:
            assert await orchestrator.wait_ready()
            worker = RawWorker(http, f"wss://127.0.0.1:{port}/api/v1/tasks/default/stream")
            await worker.register()
            url = f"https://127.0.0.1:{port}/api/v1/queues/default/tasks"
            async with http.post(url, json={"activityName": "wf.echo", "input": 1}) as reply:
                assert reply.status == 201
            task = await worker.recv_type("task")
            await worker.result(task, 2)
            assert (await worker.recv_type("taskResultAck"))["disposition"] == "applied"
            await worker.close()
        async with aiohttp.ClientSession() as plain:  # no trust in the CA: refused
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await plain.get(f"https://127.0.0.1:{port}/healthz")
    finally:
        await stop(runner)
