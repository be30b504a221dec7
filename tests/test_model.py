"""The value types: the fast constructors gateway.model puts on its frozen dataclasses."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from gateway.model import Observation, Reading


@pytest.mark.parametrize("cls", [Observation, Reading])
def test_the_fast_inits_keep_the_dataclass_fields_defaults_and_frozenness(cls: type) -> None:
    # gateway.model replaces the frozen dataclasses' __init__ for speed: a field added to
    # the class but not to its init (or a changed default) must fail here, not in the field.
    params = list(inspect.signature(cls.__init__).parameters.values())[1:-1]  # self, _set
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default == (
            inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        )
    required = [p for p in params if p.default is inspect.Parameter.empty]
    values = {p.name: f"v{i}" for i, p in enumerate(params)}  # every field given, by keyword
    obj = cls(**values)
    assert {f.name: getattr(obj, f.name) for f in fields} == values
    positional = cls(*[values[p.name] for p in params])
    assert positional == obj and hash(positional) == hash(obj)
    minimal = cls(*[values[p.name] for p in required])
    for p in params[len(required) :]:
        assert getattr(minimal, p.name) == p.default
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, fields[0].name, "changed")
    with pytest.raises(TypeError):
        cls(*[values[p.name] for p in required[:-1]])  # a required field missing
