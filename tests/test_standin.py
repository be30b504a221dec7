"""Stand-ins for what paho imports but seldom uses (gateway.uplink.standin): the daemon does
not load urllib.request (email, http.client, ...) or hashlib until something uses them, and
then they are the real modules, working as if loaded at the start."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import types
from collections.abc import Iterator

import pytest

from gateway.uplink.standin import StandIn, stand_in

# A fresh interpreter: importing the MQTT client, then using what paho deferred.
PROBE = """
import json, sys
import gateway.uplink.client
import paho.mqtt.client as paho
before = sorted(m for m in ("email", "http.client", "tempfile", "_hashlib") if m in sys.modules)
import hashlib, urllib.request
proxies = urllib.request.getproxies()  # the first use loads the real module
from urllib.request import Request
print(json.dumps({
    "before": before,
    "mqtt_proxy": proxies.get("mqtt"),
    "real_urllib": type(sys.modules["urllib.request"]) is type(sys) and
        hasattr(sys.modules["urllib.request"], "__file__"),
    "same_everywhere":
        urllib.request is sys.modules["urllib.request"] is sys.modules["urllib"].request,
    "request_class": Request.__module__,
    "sha256": hashlib.sha256(b"gateway").hexdigest(),
    "paho_sha1": paho.hashlib.sha1(b"gateway").hexdigest(),  # paho holds the stand-in
    "real_hashlib": hasattr(sys.modules["hashlib"], "__file__"),
    "email_after": "email" in sys.modules,
}))
"""


def test_paho_s_seldom_used_imports_load_on_first_use_and_then_work_as_usual() -> None:
    env = {**os.environ, "mqtt_proxy": "http://proxy.example:3128", "no_proxy": ""}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env
    )
    got = json.loads(out.stdout)
    assert got["before"] == [], "loaded by importing the MQTT client: the stand-ins did not hold"
    assert got["mqtt_proxy"] == "http://proxy.example:3128"  # the real getproxies ran
    assert got["real_urllib"] and got["same_everywhere"] and got["email_after"]
    assert got["request_class"] == "urllib.request"
    assert got["sha256"] == hashlib.sha256(b"gateway").hexdigest()
    assert got["paho_sha1"] == hashlib.sha1(b"gateway").hexdigest()
    assert got["real_hashlib"]


@pytest.fixture
def name() -> Iterator[str]:
    """A module name nothing else uses; removed again after the test."""
    module = f"gateway_test_standin_{os.getpid()}_{threading.get_ident()}"
    yield module
    sys.modules.pop(module, None)


def real_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.answer = 42  # type: ignore[attr-defined]
    return module


def test_a_failed_load_leaves_the_stand_in_to_try_again(name) -> None:
    attempts: list[int] = []

    def load() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("not yet")
        sys.modules[name] = real_module(name)  # what an import does

    assert stand_in(name, load)
    with pytest.raises(ImportError, match="not yet"):
        _ = sys.modules[name].answer
    assert isinstance(sys.modules[name], StandIn)
    assert sys.modules[name].answer == 42
    assert not isinstance(sys.modules[name], StandIn) and len(attempts) == 2
    assert not stand_in(name, load), "a loaded module is never replaced by a stand-in"


def test_threads_asking_at_once_load_the_module_once(name) -> None:
    loads: list[int] = []
    go = threading.Barrier(8)

    def load() -> None:
        loads.append(1)
        sys.modules[name] = real_module(name)

    stand_in(name, load)
    held = sys.modules[name]  # what a module that imported it early keeps
    answers: list[int] = []

    def ask() -> None:
        go.wait()
        answers.append(held.answer)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [42] * 8 and loads == [1]
