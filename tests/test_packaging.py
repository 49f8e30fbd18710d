"""The distribution is ``penguiflow-runtime``; the import package it installs is ``penguiflow``.

Another project publishes a distribution named ``penguiflow`` that installs the same import
package, so every ``pip install`` line must name ours: ``pip install 'penguiflow[sqlite]'``
would install the other project.
"""

from __future__ import annotations

import ast
import importlib.metadata
import io
import re
import tokenize
import tomllib
from pathlib import Path

import penguiflow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "penguiflow"
DISTRIBUTION = "penguiflow-runtime"

# "pip install", options such as -q or -e, then the first requirement (quoted or not).
PIP_INSTALL = re.compile(r"pip\s+install\s+(?:-{1,2}[\w-]+\s+)*[`'\"]*([\w.-]+)(\[[\w,-]*\])?")

# Modules whose import needs an optional extra: each names the install line in its hint.
HINTED = {
    "distributed/__init__.py",
    "distributed/_connection.py",
    "observe/__init__.py",
    "observe/_server.py",
    "observe/prometheus.py",
    "observe/tracing.py",
    "stores/postgres.py",
    "stores/sqlite.py",
}


def test_installed_distribution_is_penguiflow_runtime() -> None:
    """The metadata pip installed names ``penguiflow-runtime``, at the package's version."""
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    assert metadata["Name"] == DISTRIBUTION
    assert metadata["Version"] == penguiflow.__version__
    assert DISTRIBUTION in importlib.metadata.packages_distributions()["penguiflow"]
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert (project["name"], project["version"]) == (DISTRIBUTION, penguiflow.__version__)


def text_of(path: Path) -> list[str]:
    """Every string constant (docstrings included) and comment of a Python module."""
    source = path.read_text(encoding="utf-8")
    texts = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    texts.extend(token.string for token in tokens if token.type == tokenize.COMMENT)
    return texts


def install_hints(texts: list[str]) -> list[tuple[str, str]]:
    """``(requirement name, whole match)`` for each ``pip install`` in ``texts``."""
    return [
        (match.group(1), match.group(0)) for text in texts for match in PIP_INSTALL.finditer(text)
    ]


def test_every_install_hint_in_the_package_names_penguiflow_runtime() -> None:
    hinted: set[str] = set()
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, hint in install_hints(text_of(path)):
            hinted.add(path.relative_to(PACKAGE).as_posix())
            if name != DISTRIBUTION:
                wrong.append(f"{path.relative_to(ROOT)}: {hint!r}")
    assert not wrong, "install hints that do not name penguiflow-runtime:\n" + "\n".join(wrong)
    assert hinted >= HINTED  # the scan really read the hints


def test_no_install_line_in_docs_or_examples_installs_the_other_package() -> None:
    """README, benchmarks notes and scripts install ``penguiflow-runtime`` or the checkout."""
    documents = [ROOT / "README.md", ROOT / "BENCHMARKS.md"]
    scripts = [
        *sorted((ROOT / "examples").glob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")),
    ]
    found: list[tuple[Path, str, str]] = []
    for path in documents:
        text = path.read_text(encoding="utf-8")
        found.extend((path, name, hint) for name, hint in install_hints([text]))
    for path in scripts:
        found.extend((path, name, hint) for name, hint in install_hints(text_of(path)))
    wrong = [
        f"{path.relative_to(ROOT)}: {hint!r}" for path, name, hint in found if name == "penguiflow"
    ]
    assert not wrong, "install lines naming the other project's distribution:\n" + "\n".join(wrong)
    names = {name for _, name, _ in found}
    assert {DISTRIBUTION, "."} <= names  # both kinds of line were seen
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip uninstall penguiflow\n" in readme  # the switch instructions
