"""What the project ships: the sdist's files and the package metadata.

The sdist is built here as a maintainer would (``python -m build --sdist``,
offline: ``--no-isolation`` with hatchling from the test extra), from a copy of
the working tree in which a test run has left its caches behind.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Directories and files a test run, a type check or a lint leaves in the tree.
CACHES = {
    ".hypothesis/examples/0a1b/2c3d": b"hypothesis example",
    ".hypothesis/unicode_data/14.0.0/charmap.json.gz": b"\x1f\x8b",
    ".pytest_cache/v/cache/lastfailed": b"{}",
    ".mypy_cache/3.11/httpx_tokenauth/_auth.data.json": b"{}",
    ".ruff_cache/0.6.0/123456": b"ruff",
    ".coverage": b"coverage data",
    ".coverage.host.1234.567": b"coverage data",
    "htmlcov/index.html": b"<html></html>",
    "tests/__pycache__/test_cli.cpython-311-pytest-8.3.2.pyc": b"\x00",
    "src/httpx_tokenauth/__pycache__/_auth.cpython-311.pyc": b"\x00",
}
CACHE_PARTS = {".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", "htmlcov"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    """The sdist built from a copy of the tree full of caches, and without .gitignore."""
    base = tmp_path_factory.mktemp("sdist")
    tree = base / "httpx-tokenauth"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(".git", ".venv", "dist", "build", "*.egg-info"),
    )
    for name, data in CACHES.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # The exclusion must come from pyproject.toml, not from .gitignore.
    (tree / ".gitignore").unlink(missing_ok=True)
    out = base / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = out.glob("*.tar.gz")
    return tarfile.open(archive)


def _members(sdist: tarfile.TarFile) -> set[PurePosixPath]:
    """Member paths without the leading ``httpx_tokenauth-<version>/``."""
    return {PurePosixPath(*PurePosixPath(name).parts[1:]) for name in sdist.getnames()}


def test_sdist_carries_no_test_caches(sdist: tarfile.TarFile) -> None:
    """No .hypothesis/, .pytest_cache/, mypy/ruff caches, coverage data or bytecode."""
    members = _members(sdist)
    leaked = sorted(
        str(path)
        for path in members
        if CACHE_PARTS & set(path.parts)
        or "__pycache__" in path.parts
        or path.name.startswith(".coverage")
        or path.suffix == ".pyc"
    )
    assert leaked == []


def test_sdist_carries_what_a_clone_needs_to_build_and_test(sdist: tarfile.TarFile) -> None:
    """The package, py.typed, tests, docs, scripts, README, LICENSE and pyproject.toml."""
    members = _members(sdist)
    expected = {
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "PKG-INFO",
        "src/httpx_tokenauth/__init__.py",
        "src/httpx_tokenauth/py.typed",
        "src/httpx_tokenauth/testing/_authorization_server.py",
        "tests/conftest.py",
        "tests/integration/test_end_to_end.py",
        "docs/README.md",
        "scripts/test",
    }
    assert {PurePosixPath(p) for p in expected} <= members
    sources = {
        PurePosixPath(path.relative_to(ROOT).as_posix())
        for path in (ROOT / "src").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sources <= members


def test_metadata_has_no_placeholder_urls_and_names_each_python(
    sdist: tarfile.TarFile,
) -> None:
    """PKG-INFO: no example.invalid URL; classifiers for Python 3.10 to 3.13; >=3.10."""
    (info,) = (
        m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("PKG-INFO")
    )
    extracted = sdist.extractfile(info)
    assert extracted is not None
    metadata = email.message_from_bytes(extracted.read())
    assert "example.invalid" not in str(metadata)
    assert metadata.get_all("Project-URL") is None
    classifiers = set(metadata.get_all("Classifier") or [])
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert metadata["Requires-Python"] == ">=3.10"
