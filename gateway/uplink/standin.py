"""Stand-ins for modules paho imports at its top but an MQTT session rarely uses.

paho's client imports `urllib.request` (used only to look up a proxy, and only when PySocks is
installed) and `hashlib` (used only for the WebSocket handshake). Loaded, urllib.request brings
email, http.client, tempfile and shutil, and hashlib OpenSSL's digests: together ~2.5 MB of an
idle daemon's memory, for nothing. `defer_paho_imports()` (called by gateway.uplink.client
before it imports paho) puts a stand-in module under each name not loaded yet. The first
attribute anyone asks of a stand-in (`urllib.request.getproxies`, `hashlib.sha1`, `from hashlib
import md5`) loads the real module, which then replaces the stand-in in `sys.modules` (and on
its package): everything works as if it had been loaded at the start, only later.

`importlib.util.LazyLoader` cannot do this on Python 3.11: an `import` statement reads the
module's `__spec__`, which already loads it. Must not: stand in for a module a config's own
code path needs at start (that would only move the cost), or change what the real module does.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_LOCK = threading.RLock()  # one real load at a time, whichever thread asks first


class StandIn(types.ModuleType):
    """Module `name` until something uses it; `load()` imports the real one."""

    def __init__(self, name: str, load: Callable[[], object]) -> None:
        super().__init__(name)
        self._stand_in_load = load

    def __getattr__(self, attr: str) -> Any:
        # Only for attributes the stand-in does not have: everything but the module basics.
        name = self.__name__
        with _LOCK:
            if sys.modules.get(name) is self:
                del sys.modules[name]
                try:
                    self._stand_in_load()
                except BaseException:
                    sys.modules[name] = self
                    raise
        return getattr(sys.modules[name], attr)


def _urllib_request() -> object:
    import urllib.request  # the real one; the import sets it on `urllib` as well

    return urllib.request


def _hashlib() -> object:
    import hashlib

    return hashlib


def stand_in(name: str, load: Callable[[], object]) -> bool:
    """Put a stand-in under `name` unless the module is loaded already; True if it did."""
    if name in sys.modules:
        return False
    module = StandIn(name, load)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # what `import parent.child` binds
    return True


def defer_paho_imports() -> None:
    """Stand-ins for urllib.request and hashlib (see the module's docstring)."""
    import urllib  # the package only (urllib/__init__.py is empty)

    del urllib
    stand_in("urllib.request", _urllib_request)
    stand_in("hashlib", _hashlib)
