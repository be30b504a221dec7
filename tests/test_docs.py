"""Every ```toml block of README.md and docs/*.md is a config the loader accepts, and every
quantity a shipped profile emits is in the vocabulary `gateway/model.py` documents.

A block with a `[gateway]` table is a full config and must parse as written. Any other block
is a fragment (only `[[buses]]` tables, a lone device, or only `[alerts...]`): it is parsed
inside the smallest base config that makes it whole, named in WRAPPERS with why.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway import model
from gateway.config import loader
from gateway.config.profiles import BUILTIN_DIR, ProfileLibrary
from gateway.errors import Problem

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^[ \t]*```toml[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)

# The only key every config needs: the box's id (README "Configuration reference").
BASE = '[gateway]\nid = "docs-check"\n'
# A lone `[[buses.devices]]` (the synthetic driver's snippet) needs the bus it belongs to.
SYNTHETIC_BUS = '[[buses]]\nname = "synthetic"\ntransport = "synthetic"\n'


def toml_blocks() -> list[tuple[str, str]]:
    """(id, text) of every ```toml block, id = file:line of its fence."""
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


def wrap(block: str) -> str:
    """The block as a whole config: as written when it has `[gateway]`, else in its wrapper."""
    tables = tomllib.loads(block)
    if "gateway" in tables:
        return block  # a full config: checked exactly as written
    if set(tables) == {"buses"} and all("name" not in b for b in tables["buses"]):
        # Only `[[buses.devices]]`: a device snippet of a driver section without its bus.
        return BASE + SYNTHETIC_BUS + block
    assert set(tables) <= {"buses", "alerts"}, f"a fragment of unknown kind: {sorted(tables)}"
    # `[[buses]]` tables and/or `[alerts...]`: all they lack is the box's id.
    return BASE + block


BLOCKS = toml_blocks()


def test_docs_have_toml_blocks():
    # The README's reference, synthetic, three driver sections and the alerts snippet.
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_toml_block_is_a_valid_config(where: str, block: str):
    loader.parse(wrap(block), where)


def test_configuration_reference_is_a_full_config():
    full = [w for w, b in BLOCKS if "gateway" in tomllib.loads(b)]
    assert any(w.startswith("README.md") for w in full)


def _vocabulary() -> set[str]:
    doc = model.__doc__ or ""
    table = doc.split("==================  ======", 2)[2]
    names = set()
    for line in table.splitlines():
        word = line.split(" ", 1)[0]
        if word and not word.startswith("="):
            names.update(word.split("/"))
    return names


def _base_quantity(quantity: str, vocabulary: set[str]) -> str:
    # A second one of a kind carries a suffix (`temperature_internal`, `temperature_2`).
    if quantity in vocabulary:
        return quantity
    head, _, _ = quantity.rpartition("_")
    return head if head in vocabulary else quantity


def test_every_profile_quantity_is_in_the_documented_vocabulary():
    problems: list = []
    profiles = ProfileLibrary([BUILTIN_DIR]).all(problems)
    assert not problems and profiles
    vocabulary = _vocabulary()
    assert {"water_level", "trap_state", "relay"} <= vocabulary
    emitted = {
        (p.name, o.quantity)
        for p in profiles
        for example in p.examples
        for o in example.readings or ()
    }
    missing = sorted(
        (name, q) for name, q in emitted if _base_quantity(q, vocabulary) not in vocabulary
    )
    assert not missing, f"quantities not in gateway/model.py's vocabulary: {missing}"


PROFILE_FENCE = re.compile(r"^[ \t]*```toml profile[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)


def profile_blocks() -> list[tuple[str, str]]:
    """(id, text) of every ```toml profile block: a device profile, not a config."""
    blocks = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in PROFILE_FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


def test_the_docs_show_a_profile() -> None:
    assert profile_blocks(), "docs/architecture.md shows how to write a device profile"


@pytest.mark.parametrize(("where", "block"), profile_blocks(), ids=lambda v: str(v)[:40])
def test_a_profile_in_the_docs_loads_and_its_examples_hold(where, block, tmp_path) -> None:
    (tmp_path / "doc-profile.toml").write_text(block)
    problems: list[Problem] = []
    profile = ProfileLibrary([tmp_path]).get("doc-profile", problems, where)
    assert not problems, "\n".join(map(str, problems))
    assert profile is not None and profile.examples
    vocabulary = _vocabulary()
    quantities = {o.quantity for e in profile.examples for o in e.readings or ()}
    assert {_base_quantity(q, vocabulary) for q in quantities} <= vocabulary
