"""Gateway configs for the tests and benchmarks, kept as TOML files in tests/fixtures/.

A fixture is plain TOML with string.Template placeholders (`$port`, `${tmp}`) for what changes
per run: free ports, temporary paths, TOML snippets a test adds. Template placeholders leave
TOML's own braces alone, so inline tables need no escaping; a literal dollar sign is `$$`.

This module only fills placeholders in; it does not parse the result (callers hand the text to
gateway.config.loader.parse, as the daemon would) and holds no config text of its own.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_names() -> list[str]:
    """Every fixture, by name (the file name without `.toml`), sorted."""
    return sorted(p.stem for p in FIXTURES.glob("*.toml"))


def placeholders(name: str) -> set[str]:
    """The placeholder names fixture `name` expects."""
    return set(_template(name).get_identifiers())


def load_config(name: str, **values: object) -> str:
    """The text of fixture `name` with every placeholder replaced by `str(value)`.

    Every placeholder must be given and every value must have a placeholder: a typo in either
    raises TypeError naming the fixture, instead of leaving `$port` in the text or silently
    dropping a value the caller meant to set.
    """
    template = _template(name)
    wanted = set(template.get_identifiers())
    missing, unknown = wanted - values.keys(), values.keys() - wanted
    if missing or unknown:
        raise TypeError(
            f"fixture {name}.toml: missing values {sorted(missing)}, "
            f"no placeholder for {sorted(unknown)}"
        )
    return template.substitute({key: str(value) for key, value in values.items()})


def _template(name: str) -> Template:
    path = FIXTURES / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(f"no config fixture {name!r}; known: {', '.join(fixture_names())}")
    template = Template(path.read_text(encoding="utf-8"))
    if not template.is_valid():
        raise ValueError(f"fixture {name}.toml: a '$' that is not a placeholder (write '$$')")
    return template
