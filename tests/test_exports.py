"""The public surface: __all__ is sorted, complete, and every name resolves."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil

import httpx_tokenauth


def test_all_is_sorted() -> None:
    """__all__ is kept in sorted order so diffs stay readable."""
    assert httpx_tokenauth.__all__ == sorted(httpx_tokenauth.__all__)


def test_all_names_resolve() -> None:
    """Every name in __all__ is an attribute of the package."""
    for name in httpx_tokenauth.__all__:
        assert hasattr(httpx_tokenauth, name), name


def test_all_is_complete() -> None:
    """Every public class or function the package exposes is listed in __all__ (names that
    load on first use included: dir() lists them)."""
    values = {name: getattr(httpx_tokenauth, name) for name in dir(httpx_tokenauth)}
    public = {
        name
        for name, value in values.items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__.startswith("httpx_tokenauth")
    }
    assert public == set(httpx_tokenauth.__all__)


def test_private_modules_export_only_what_they_define_or_reexport() -> None:
    """Each private module's own __all__ names things that exist in it."""
    for info in pkgutil.iter_modules(httpx_tokenauth.__path__):
        if info.name == "httpx2" and importlib.util.find_spec("httpx2") is None:
            continue  # the optional httpx2 binding, where httpx2 cannot be installed (3.10)
        module = importlib.import_module(f"httpx_tokenauth.{info.name}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{info.name}.{name}"


def test_every_error_in_the_package_derives_from_token_error() -> None:
    """One exception root: every exception class exported derives from TokenError."""
    for name in httpx_tokenauth.__all__:
        value = getattr(httpx_tokenauth, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, httpx_tokenauth.TokenError), name


def test_importing_the_package_stays_light() -> None:
    """`import httpx_tokenauth` loads none of pyjwt, cryptography, asyncio, httpx2, the CLI,
    the testing servers, redis-py, sqlite3 or OpenTelemetry: each loads when its feature is
    first used."""
    import subprocess
    import sys

    heavy = ["jwt", "cryptography", "asyncio", "httpx2", "httpx_tokenauth._cli", "authlib"]
    heavy += ["redis", "sqlite3", "httpx_tokenauth.testing"]
    heavy += ["opentelemetry", "httpx_tokenauth._otel"]
    code = f"import sys, httpx_tokenauth; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
