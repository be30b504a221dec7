"""The runtime's actuator view: listeners hear of confirmed relay writes, and only of those."""

from __future__ import annotations

import pytest

from gateway.errors import Transient
from gateway.runtime import ObservedActuators


class Relay:
    def __init__(self, confirm: bool = True) -> None:
        self.confirm = confirm
        self.writes: list[tuple[int, bool]] = []

    async def switch(self, channel: int, on: bool) -> None:
        if not self.confirm:
            raise Transient("no reply")
        self.writes.append((channel, on))


async def test_listeners_see_confirmed_writes_only_and_the_view_is_live():
    table: dict[str, Relay] = {}
    heard: list[tuple[str, int, bool]] = []
    view = ObservedActuators(table, [lambda d, c, on: heard.append((d, c, on))])
    assert view.get("relay-1") is None and len(view) == 0
    table["relay-1"] = Relay()  # a bus registers its relay after the view exists
    table["relay-2"] = Relay(confirm=False)
    actuator = view.get("relay-1")
    assert actuator is not None
    await actuator.switch(1, True)
    assert table["relay-1"].writes == [(1, True)] and heard == [("relay-1", 1, True)]
    with pytest.raises(Transient):
        await view["relay-2"].switch(2, True)
    assert heard == [("relay-1", 1, True)]
    assert sorted(view) == ["relay-1", "relay-2"]
