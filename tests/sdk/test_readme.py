"""The README quick start as written: ``worker.py`` and ``submit.py`` against ``treadle serve``.

The two files are taken from ``sdk-python/README.md`` unchanged except for the
port (the test's orchestrator listens on a free one instead of 7233).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Final

import pytest
from processes import SdkWorkerChild, free_port, start_orchestrator

README: Final = Path(__file__).parents[2] / "sdk-python" / "README.md"


def quick_start() -> tuple[str, str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), flags=re.DOTALL)
    worker, submit = blocks[0], blocks[1]
    assert "Worker(" in worker
    assert "Client(" in submit
    return worker, submit


@pytest.mark.timeout(90)
async def test_the_quick_start_works_as_written(tmp_path: Path) -> None:
    port = free_port()
    worker_py, submit_py = (
        text.replace("127.0.0.1:7233", f"127.0.0.1:{port}") for text in quick_start()
    )
    (tmp_path / "worker.py").write_text(worker_py, "utf-8")
    (tmp_path / "submit.py").write_text(submit_py, "utf-8")
    async with contextlib.AsyncExitStack() as stack:
        await start_orchestrator(stack, "orchestrator", port, tmp_path / "t.db", Counter())
        worker = SdkWorkerChild("worker.py")
        stack.push_async_callback(worker.reap)
        await worker.start([sys.executable, str(tmp_path / "worker.py")], read="stderr")
        await worker.registered()
        submit = await asyncio.create_subprocess_exec(
            sys.executable,
            str(tmp_path / "submit.py"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(submit.communicate(), 60)
        assert (submit.returncode, out.decode()) == (0, "Hello, Ada!\n3\n"), err.decode()
        assert await worker.stop() == 0, worker.said()  # SIGTERM drains and exits 0
