"""proxy.decide._queues: which mounts are Magento's asynchronous REST (every request there
queues an operation, so read routes need write: issue #14). Tested without splitting the
target on every request; the property pins it to the segment rule it stands for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.decide import _queues
from proxy.policy import Mount
from proxy.routing import compile_pattern

_SEGMENT = st.sampled_from(["", "async", "bulk", "V1", "rest", "{store_code}", "xasync", "async2"])


def _mount(target: str, upstream: str = "magento") -> Mount:
    return Mount(
        name="m", pattern=compile_pattern("/m"), upstream=upstream, target=target,
        routes="r", form="plain", methods=None, auth=None,
    )  # fmt: skip


@given(st.lists(_SEGMENT, max_size=6), st.sampled_from(["magento", "panel"]))
def test_a_target_queues_when_one_of_its_segments_is_async(parts: list[str], upstream: str) -> None:
    target = "/".join(parts)
    assert _queues(_mount(target, upstream)) == (
        upstream == "magento" and "async" in target.split("/")
    )


def test_the_shipped_async_mounts_queue() -> None:
    assert _queues(_mount("/rest/{store_code}/async/V1"))
    assert _queues(_mount("/rest/{store_code}/async/bulk/V1"))
    assert not _queues(_mount("/rest/{store_code}/V1"))
