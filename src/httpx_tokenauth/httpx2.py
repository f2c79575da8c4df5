"""TokenAuth for httpx2, the maintained continuation of httpx.

    import httpx2
    from httpx_tokenauth import ClientCredentials
    from httpx_tokenauth.httpx2 import TokenAuth

    auth = TokenAuth(ClientCredentials("https://as.example/token",
                                       client_id="svc", client_secret="..."))
    with httpx2.Client(auth=auth) as client:
        client.get("https://api.example/things")

The same class as ``httpx_tokenauth.TokenAuth`` (the same drivers, cache,
providers and rules), bound to httpx2: it is an ``httpx2.Auth``, and its token
requests go over an ``httpx2.Client`` / ``httpx2.AsyncClient`` of its own or
the ones passed as ``token_client`` / ``async_token_client``. Needs the
``httpx2`` extra: ``pip install 'httpx-tokenauth[httpx2]'``.
"""

from __future__ import annotations

try:
    import httpx2
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "httpx_tokenauth.httpx2 needs httpx2: pip install 'httpx-tokenauth[httpx2]'"
    ) from exc

from ._auth import TokenAuthBase
from ._transport import HTTPLib

__all__ = ["TokenAuth"]

HTTPX2 = HTTPLib.of(httpx2)


class TokenAuth(TokenAuthBase, httpx2.Auth):
    """``httpx_tokenauth.TokenAuth`` for ``httpx2.Client`` and ``httpx2.AsyncClient``.

    Same arguments and behaviour; ``token_client`` / ``async_token_client``
    are an ``httpx2.Client`` / ``httpx2.AsyncClient``.
    """

    _lib = HTTPX2
