"""Request bodies are judged the same whatever shortcut the checker takes: nesting, binary and non-finite values."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lighthouse.server.codec import decode_body
from lighthouse.server.problems import ApiError

LIMIT = 64


def reference_verdict(value: Any) -> bool:
    """The plain rule: every value at depth <= 64, no bytes, no NaN or infinity."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > LIMIT:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, (bytes, bytearray)) or (isinstance(item, float) and not math.isfinite(item)):
            return False
    return True


def nested(leaf: Any, depth: int, *, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {"k": leaf}
    return leaf


scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1), st.floats(), st.text(max_size=3), st.binary(max_size=3))
bodies = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                                            max_size=3), max_leaves=20)


def accepted(raw: bytes, content_type: str) -> bool:
    try:
        decode_body(raw, content_type)
    except ApiError as exc:
        assert exc.status == 400
        return False
    return True


def verdict(value: Any) -> bool:
    return accepted(msgpack.packb(value, use_bin_type=True), "application/msgpack")


@settings(max_examples=300, deadline=None)
@given(body=bodies, depth=st.integers(min_value=0, max_value=70), as_list=st.booleans())
def test_the_checker_agrees_with_the_plain_rule(body: Any, depth: int, as_list: bool) -> None:
    value = nested(body, depth, as_list=as_list)
    assert verdict(value) == reference_verdict(value)


@pytest.mark.parametrize("leaf", ["s", 1, 1.5, None, True, [], {}])
def test_the_depth_line_is_exact_for_every_kind_of_leaf(leaf: Any) -> None:
    assert verdict(nested(leaf, LIMIT, as_list=True)) is True
    assert verdict(nested([leaf], LIMIT, as_list=True)) is False
    assert verdict(nested({"k": leaf}, LIMIT, as_list=False)) is False


@pytest.mark.parametrize("raw", [b'{"a": 1e400}', b'[1, [2, [-1e999]]]'])
def test_overflowing_json_numbers_are_refused(raw: bytes) -> None:
    with pytest.raises(ApiError, match="NaN and infinite"):
        decode_body(raw, "application/json")


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))
json_bodies = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=2), inner, max_size=3), max_leaves=20)


def json_verdict(value: Any) -> bool:
    return accepted(json.dumps(value).encode(), "application/json")


@settings(max_examples=300, deadline=None)
@given(body=json_bodies, depth=st.integers(min_value=0, max_value=70), as_list=st.booleans())
def test_the_json_path_agrees_with_the_plain_rule(body: Any, depth: int, as_list: bool) -> None:
    """JSON bodies take msgspec and a nesting check of its own (it holds no binary or non-finite values)."""
    value = nested(body, depth, as_list=as_list)
    assert json_verdict(value) == reference_verdict(value)
