"""The documentation builds (mkdocs --strict), lists every page, and its generated parts match
the code (config schema, command-line options)."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_docs import (  # noqa: E402
    generated_pages,
    generators,
    render,
    subcommand_parsers,
)


def _nav_pages(items) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_generated_docs_match_the_code():
    makers = generators()
    stale = [
        str(page.relative_to(REPO))
        for page in generated_pages()
        if render(page.read_text(encoding="utf-8"), makers) != page.read_text(encoding="utf-8")
    ]
    assert not stale, f"{stale} out of date: run `python tests/docs/generate_docs.py`"


def test_configuration_page_lists_every_config_key():
    from medseg3d.training.config import default_config

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [
        f"{section}.{key}"
        for section, keys in default_config().items()
        for key in keys
        if f"`{section}.{key}`" not in text
    ]
    assert not missing


def test_commands_page_lists_every_command_and_option():
    text = (DOCS / "commands.md").read_text(encoding="utf-8")
    missing = []
    for name, parser in subcommand_parsers().items():
        if f"## `{name}`" not in text:
            missing.append(name)
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or "-h" in action.option_strings:
                continue
            missing += [f"{name} {o}" for o in action.option_strings if f"`{o}`" not in text]
    assert not missing


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(_nav_pages(config["nav"]))
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages - nav == set(), f"pages missing from mkdocs.yml nav: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_mkdocs_build_strict(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").is_file()
