"""Talk to the JavaScript oracle (``oracle/canonical_manifest.mjs``).

Manifests travel as ASCII JSON text so that JavaScript parses every number and
every (even lone) surrogate itself.  Lines are split on ``\\n`` only: the
canonical JSON may hold U+2028, which ``str.splitlines`` would split on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import IO, Any

ORACLE = Path(__file__).parent / "oracle" / "canonical_manifest.mjs"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "node is not on PATH: the oracle tests need Node.js (CI machines have it)"
        )
    return node


def node_canonical(manifests: list[Any]) -> list[tuple[str, str]]:
    """``(canonicalJson, digest)`` for each manifest, computed by one Node run."""
    stdin = "".join(json.dumps(m, ensure_ascii=True) + "\n" for m in manifests)
    done = subprocess.run(
        [_node(), str(ORACLE)], input=stdin, capture_output=True, text=True, check=True, timeout=120
    )
    rows = [json.loads(line) for line in done.stdout.split("\n") if line]
    if len(rows) != len(manifests):
        raise RuntimeError(f"oracle answered {len(rows)} of {len(manifests)}: {done.stderr}")
    return [(row["canonicalJson"], row["digest"]) for row in rows]


class NodeOracle:
    """A long-lived oracle process: one request line, one answer line."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [_node(), str(ORACLE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def canonical(self, manifest: Any) -> tuple[str, str]:
        stdin, stdout = self._pipes()
        stdin.write(json.dumps(manifest, ensure_ascii=True).encode("ascii") + b"\n")
        stdin.flush()
        row = json.loads(stdout.readline().decode("utf-8"))
        return row["canonicalJson"], row["digest"]

    def close(self) -> None:
        stdin, stdout = self._pipes()
        stdin.close()
        self._process.wait(timeout=10)
        stdout.close()
