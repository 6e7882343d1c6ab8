"""Differential tests: Python's canonical JSON and digest against Node's own JSON.stringify.

Hypothesis generates valid manifests — non-ASCII and astral identifiers, lone
surrogates, integer-like and mixed-order keys, nested capabilities, every kind
of double — and the JavaScript oracle in ``oracle/`` canonicalises the same
manifests. The two must agree byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node_oracle import NodeOracle
from treadle_protocol import parse_manifest
from treadle_protocol.jsonjs import js_number, utf8_length

pytestmark = pytest.mark.node

ANY_CHAR = st.one_of(
    st.characters(codec=None),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),  # sorts after astral in UTF-16
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),  # astral
    st.sampled_from('"\\\n\t\b\f\r\x00\x1f\x7f\u2028\u2029'),
)
TEXT = st.text(ANY_CHAR, max_size=12)
IDENT = st.text(ANY_CHAR, min_size=1, max_size=12).filter(lambda s: utf8_length(s) <= 512)
NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True)
KEY = st.one_of(TEXT, st.integers(0, 20).map(str), NAME)
NUMBER = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e21, 1e20, 1e-7, 1e-6, 5e-324, 0.1, 100.0, 2.0**53 + 2]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
CAPABILITY = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
    max_leaves=12,
)
ACTIVITY = st.fixed_dictionaries({"contractHash": IDENT, "implementationRevision": IDENT})
WORKFLOW = st.fixed_dictionaries(
    {
        "activities": st.dictionaries(NAME, ACTIVITY, max_size=4),
        "contractHash": IDENT,
        "workflowRevision": IDENT,
        "workflowVersion": IDENT,
    }
)
MANIFEST = st.fixed_dictionaries(
    {
        "manifestVersion": st.just(1),
        "protocolVersion": st.integers(1, 2**53 - 1),
        "sdkVersion": IDENT,
        "runtime": st.fixed_dictionaries({"name": IDENT, "version": TEXT}),
        "deployment": st.fixed_dictionaries(
            {"name": IDENT, "buildId": IDENT, "artifactDigest": IDENT}
        ),
        "workflows": st.dictionaries(NAME, WORKFLOW, max_size=4),
        "capabilities": st.dictionaries(KEY, CAPABILITY, max_size=8),
    }
)


@pytest.fixture(scope="module")
def oracle() -> Iterator[NodeOracle]:
    process = NodeOracle()
    yield process
    process.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=MANIFEST)
def test_canonical_json_and_digest_match_javascript(
    oracle: NodeOracle, manifest: dict[str, Any]
) -> None:
    parsed = parse_manifest(manifest)
    assert (parsed.canonical_json, parsed.digest) == oracle.canonical(manifest)


NODE_NUMBERS = """
let input = '';
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map((x) => JSON.stringify(x))));
});
"""


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.data_too_large])
@given(st.lists(NUMBER, min_size=200, max_size=200))
def test_number_formatting_matches_javascript(numbers: list[int | float]) -> None:
    node = shutil.which("node")
    assert node is not None, "node must be on PATH"
    done = subprocess.run(
        [node, "-e", NODE_NUMBERS],
        input=json.dumps(numbers),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert [js_number(n) for n in numbers] == json.loads(done.stdout)
