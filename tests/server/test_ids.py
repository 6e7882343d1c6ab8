"""Operation ids the orchestrator assigns: version 7 UUIDs, ordered by creation time."""

from __future__ import annotations

import time
import uuid

from treadle.ids import new_operation_id


def test_assigned_ids_are_version_7_uuids_with_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    text = new_operation_id()
    after = time.time_ns() // 1_000_000
    value = uuid.UUID(text)
    assert str(value) == text
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after


def test_assigned_ids_sort_by_millisecond_and_differ_within_one() -> None:
    ids = [new_operation_id() for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    millis = [uuid.UUID(text).int >> 80 for text in ids]
    assert millis == sorted(millis)
    # the key order (UTF-8 bytes of the text) is the millisecond order
    assert sorted(ids, key=lambda text: text.encode()) == sorted(
        ids, key=lambda text: (uuid.UUID(text).int >> 80, text)
    )
