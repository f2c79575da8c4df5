"""LocalCA: a throwaway certificate authority for servers on 127.0.0.1 (trustme)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

__all__ = ["LocalCA"]

#: The names every server certificate from a LocalCA is valid for.
SERVER_IDENTITIES = ("127.0.0.1", "localhost", "::1")


class LocalCA:
    """A certificate authority that exists only in this process, for TLS on loopback.

    The servers in this package get their certificates from it; clients trust
    it only when given :meth:`client_context` (or :attr:`cert_pem`), so a
    client that was not told about it fails certificate verification exactly
    as it would against a server it has no reason to trust.

    Example::

        ca = LocalCA()
        verify = ca.client_context()                       # trusts this CA only
        mtls = ca.client_context(client_cert="svc@example")  # ... and presents a cert
        httpx.Client(verify=verify)
    """

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert(*SERVER_IDENTITIES)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM: what a client must trust (e.g. written to a CA bundle)."""
        return self._ca.cert_pem.bytes()

    def client_context(self, *, client_cert: str | None = None) -> ssl.SSLContext:
        """An SSLContext for clients that trusts this CA (and nothing else).

        With ``client_cert`` (an e-mail address, hostname or IP address), the
        context also presents a client certificate issued by this CA for that
        identity, for mutual TLS.
        """
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        if client_cert is not None:
            self._ca.issue_cert(client_cert).configure_cert(ctx)
        return ctx

    def write_client_cert(self, identity: str, directory: Path) -> tuple[Path, Path]:
        """A client certificate for ``identity`` and its private key, as PEM files.

        For tools that take file paths (``httpx-tokenauth --cert/--cert-key``,
        curl): returns (certificate path, key path) inside ``directory``.
        """
        issued = self._ca.issue_cert(identity)
        name = "".join(c if c.isalnum() else "_" for c in identity)
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
        key.write_bytes(issued.private_key_pem.bytes())
        return cert, key

    def server_context(self, *, request_client_cert: bool = False) -> ssl.SSLContext:
        """An SSLContext for a server on 127.0.0.1 / localhost / ::1.

        With ``request_client_cert``, the server asks for a client certificate
        (optional) and verifies any it gets against this CA.
        """
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(ctx)
        if request_client_cert:
            self._ca.configure_trust(ctx)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def server_cert_chain_pem(self) -> bytes:
        """The server's private key and certificate chain, PEM (for servers that want a file)."""
        return self._server_cert.private_key_and_cert_chain_pem.bytes()

    def __repr__(self) -> str:
        return "<LocalCA>"
