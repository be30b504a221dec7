"""Real peers for the tests: a mosquitto broker per test on a free loopback port; per module,
the city platform (FIWARE IoT Agent JSON + context broker stub, tests.iotagent)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

from gateway.demo.broker import LocalBroker
from tests.iotagent import City, run_city
from tests.mqtt_peer import Collector


@pytest.fixture
def broker(tmp_path) -> Iterator[LocalBroker]:
    with LocalBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def platform(broker) -> Iterator[Collector]:
    c = Collector(broker.port)
    yield c
    c.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Iterator[City]:
    """A mosquitto broker with the real IoT Agent on it, for the whole test module (the agent
    takes a few seconds to start). Tests provision their own apikey to stay apart."""
    yield from run_city(tmp_path_factory.mktemp("city"))


@pytest.fixture
def log():
    return structlog.get_logger().bind(test=True)


@pytest.fixture
def captured_logs():
    """structlog events as dicts, for asserting on log lines."""
    with structlog.testing.capture_logs() as events:
        yield events


def pytest_collection_modifyitems(config, items):
    """Rig tests need real hardware: they are collected only with GATEWAY_RIG=1 (then run
    them with `-m rig`). Everything else always runs; a missing peer fails, never skips."""
    if os.environ.get("GATEWAY_RIG") == "1":
        return
    rig = [item for item in items if item.get_closest_marker("rig")]
    if rig:
        config.hook.pytest_deselected(items=rig)
        items[:] = [item for item in items if not item.get_closest_marker("rig")]
