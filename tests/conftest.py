"""Real peers for the tests: a mosquitto broker per test on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from gateway.broker import LocalBroker
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


@pytest.fixture
def log():
    return structlog.get_logger().bind(test=True)


@pytest.fixture
def captured_logs():
    """structlog events as dicts, for asserting on log lines."""
    with structlog.testing.capture_logs() as events:
        yield events
