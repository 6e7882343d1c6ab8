"""JavaScript JSON semantics: decoding, key order, escaping, sizes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadle_protocol import jsonjs
from treadle_protocol.errors import InvalidJsonError
from treadle_protocol.jsonjs import (
    canonical_json,
    dumps,
    is_finite_number,
    is_json_value,
    js_keys,
    js_string,
    loads,
    utf8_length,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1e400",
            math.inf,
        ),  # JSON.parse gives Infinity; orjson refuses, the fallback agrees with JS
        ('"\\ud800"', "\ud800"),  # a lone surrogate escape is a valid JSON string
        ("123456789012345678901234567890", 1.2345678901234568e29),  # a double, as in JavaScript
        ('{"a":1,"a":2}', {"a": 2}),  # the last duplicate wins, as in JSON.parse
    ],
)
def test_loads_accepts_what_json_parse_accepts(text: str, expected: object) -> None:
    assert loads(text) == expected
    assert loads(text.encode()) == expected


@pytest.mark.parametrize(
    "data",
    ["NaN", "Infinity", "-Infinity", "{", "", "\ufeff{}", b"\xff", b'"\xed\xa0\x80"', "[" * 5000],
)
def test_loads_refuses_what_json_parse_refuses(data: str | bytes) -> None:
    with pytest.raises(InvalidJsonError):
        loads(data)


def test_finite_numbers_exclude_booleans_and_infinities() -> None:
    assert is_finite_number(1)
    assert is_finite_number(-0.0)
    assert is_finite_number(10**300)
    assert not is_finite_number(True)
    assert not is_finite_number(math.inf)
    assert not is_finite_number(10**400)  # becomes Infinity as a double
    assert not is_finite_number("1")


def test_json_values_are_checked_at_any_depth_without_recursion() -> None:
    deep: object = 1
    for _ in range(5000):
        deep = [deep]
    assert is_json_value(deep)
    assert not is_json_value({"a": [1, {"b": math.nan}]})
    assert not is_json_value({1: "non-string key"})
    assert not is_json_value({"a": object()})


def test_object_keys_order_puts_array_indices_first() -> None:
    record = {"b": 1, "10": 2, "a": 3, "2": 4, "01": 5, "4294967295": 6, "-1": 7}
    assert js_keys(record) == ["2", "10", "b", "a", "01", "4294967295", "-1"]


def test_strings_are_escaped_as_json_stringify_does() -> None:
    assert js_string('a"b\\c\n\t\x00\x1f\x7f\u2028😀\ud800') == (
        '"a\\"b\\\\c\\n\\t\\u0000\\u001f\x7f\u2028😀\\ud800"'
    )


def test_canonical_json_sorts_by_utf16_code_units() -> None:
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000 in UTF-16.
    assert canonical_json({"\ue000": 1, "😀": 2, "a": 3}) == '{"a":3,"😀":2,"\ue000":1}'


def test_utf8_length_counts_a_lone_surrogate_as_three_bytes() -> None:
    assert utf8_length("é😀\ud800") == 2 + 4 + 3


def test_dumps_falls_back_for_values_orjson_cannot_write() -> None:
    assert dumps({"n": 2**70, "s": "\ud800"}) == b'{"n":1.1805916207174113e+21,"s":"\\ud800"}'
    assert dumps({"a": [1, None]}) == b'{"a":[1,null]}'


_TEXT = st.text(
    st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x7F),  # controls, quotes, backslash, DEL
        st.characters(codec=None),
    ),
    max_size=8,
)
_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**54), 2**54),
        st.sampled_from([2**53 - 1, -(2**53) + 1, 2**53, 2**64, 0.0, -0.0, 1.0, 1e21, 0.5]),
        st.floats(allow_nan=False, allow_infinity=False),
        _TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(_TEXT, st.integers(0, 20).map(str)), inner, max_size=4),
    ),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(_JSON)
def test_canonical_json_fast_path_matches_the_reference_writer(value: object) -> None:
    assert canonical_json(value) == jsonjs._canonical_json_reference(value)


def test_canonical_json_falls_back_for_what_orjson_writes_differently() -> None:
    assert canonical_json({"b": 1.0, "a": 2**53}) == '{"a":9007199254740992,"b":1}'
    assert canonical_json([1e21, -0.0]) == "[1e+21,0]"
    assert canonical_json({"\ue000": 1, "😀": 2}) == '{"😀":2,"\ue000":1}'
    with pytest.raises(TypeError):
        canonical_json((1, 2))  # not JSON here, though orjson would write an array
    deep: list[object] = []
    for _ in range(300):  # deeper than orjson writes
        deep = [deep]
    assert canonical_json(deep) == "[" * 301 + "]" * 301
