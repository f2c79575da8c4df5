"""The ``httpx-tokenauth`` command line: get a token, make one authenticated request, run the demo.

Standard library only (argparse). Loaded by the console script and by
``python -m httpx_tokenauth``, never by ``import httpx_tokenauth``.

Secrets never come from the command line (where ``ps`` and shell history would
keep them): a client secret is read from an environment variable or a file,
a private key from a file. Nothing this module prints carries a client
secret, a key or an assertion; ``token`` prints the access token on purpose,
and only that.

Exit status: 0 success, 1 the operation failed (token endpoint error, network,
TLS, unreadable file), 2 the command line or configuration is wrong.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import math
import os
import re
import ssl
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

import httpx

from . import __version__
from ._assertions import ClientAssertion, FileAssertion
from ._auth import TokenAuth
from ._client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost
from ._discovery import ServerMetadata, check_issuer
from ._dpop import DPoP, DPoPNotBoundError, generate_key, public_jwk, thumbprint
from ._errors import AssertionSourceError, ConfigurationError, InsecureTransportError, TokenError
from ._exchange import TOKEN_TYPES, TokenExchangeGrant, token_type_uri
from ._jwt import RESERVED_CLAIMS, ClientSecretJWT, JWTBearerGrant, PrivateKeyJWT
from ._keys import KeyConfigurationError, check_algorithm, load_signing_key
from ._providers import RESERVED_PARAMS, ClientCredentials
from ._request import normalize_multi, normalize_scope
from ._retry import RetryPolicy
from ._token import Token
from ._transport import root_cause
from ._url import check_token_url, redacted_url

__all__ = ["build_provider", "main", "parser", "unverified_jwt"]

PROG = "httpx-tokenauth"
ENV_PREFIX = "HTTPX_TOKENAUTH_"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

GRANTS = ("client_credentials", "jwt_bearer", "token_exchange")
AUTH_METHODS = ("basic", "post", "client_secret_jwt", "private_key_jwt", "client_assertion")
SECRET_METHODS = frozenset({"basic", "post", "client_secret_jwt"})
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
#: Headers whose values are never printed in full.
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "dpop"})


class UsageError(Exception):
    """The command line or the configuration is wrong (exit status 2)."""


class CommandError(Exception):
    """The command could not do its job (exit status 1)."""


# -- the parser -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, not the usage text, and no
    abbreviated options (a prefix such as ``--client-secret`` is never taken for an
    option that reads a secret from elsewhere)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # Name the options only: a value typed after an unknown option (say, a
            # secret after --client-secret) must not end up in a log.
            names = [a.split("=", 1)[0] for a in message[len(prefix) :].split() if a[:1] == "-"]
            message = prefix + (" ".join(names) + " (values not shown)" if names else "(not shown)")
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _env_help(name: str) -> str:
    return f"[env {ENV_PREFIX}{name}]"


_DESCRIPTION = """\
OAuth 2.0 access tokens from the shell, with the same code that serves
httpx.Client(auth=TokenAuth(...)). 'httpx-tokenauth COMMAND --help' for more.
"""

_TOKEN_EPILOG = f"""\
examples:
  export {ENV_PREFIX}TOKEN_URL=https://as.example/oauth2/token
  export {ENV_PREFIX}CLIENT_ID=billing-service
  export {ENV_PREFIX}CLIENT_SECRET=...   # or --client-secret-file PATH
  curl -H "Authorization: Bearer $({PROG} token --scope invoices:read)" https://api.example/
  {PROG} token --json    # type, expiry, scope, unverified JWT claims
  {PROG} token --client-id svc --auth private_key_jwt --key-file svc.pem --key-id k1
  {PROG} token --dpop-key-file dpop.pem --json   # a DPoP-bound token: type, key thumbprint

Client authentication, unless --auth says otherwise: client_secret_basic when a
secret is given, private_key_jwt when only --key-file is. Secrets are read
from an environment variable ({ENV_PREFIX}CLIENT_SECRET, or the one
--client-secret-env names) or a file, never from the command line.

exit status: 0 success, 1 failure (token endpoint, network, TLS, files),
2 wrong command line or configuration.
"""

_REQUEST_EPILOG = f"""\
examples:
  {PROG} request GET https://api.example/invoices
  {PROG} request POST https://api.example/invoices --json-body '{{"amount": 10}}' -v
  {PROG} request GET https://api.example/invoices --dpop   # DPoP (RFC 9449)

The status line and headers the API sent go to stdout, then the body. With -v,
every request sent (the 401 replay included) goes to stderr, with the token
shortened, and so does every token request, with why it was made (reason:
cold, expired, early, rejected, ...), how it ended and the token endpoint's
rate-limit headers. Token options are those of '{PROG} token'.

exit status: 0 a response arrived (with --fail: and its status is below 400),
1 failure, 2 wrong command line or configuration.
"""

_DISCOVER_EPILOG = f"""\
examples:
  {PROG} discover https://login.example.com/tenant
  {PROG} discover https://as.example --client-id svc --client-secret-file secret.txt
  {PROG} token --issuer https://as.example --client-id svc   # then use it

exit status: 0 the metadata was found and passes the checks, 1 it was not found or
fails them (the message says which), 2 wrong command line or configuration.
"""

_DEMO_EPILOG = """\
The demo needs the 'testing' extra: pip install 'httpx-tokenauth[testing]'
(or run ./scripts/demo from a clone). Nothing leaves 127.0.0.1.

exit status: 0 every step behaved as expected, 1 a step did not,
2 the 'testing' extra is missing.
"""


def _add_provider_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("token endpoint")
    g.add_argument(
        "--token-url", metavar="URL", help=f"the token endpoint {_env_help('TOKEN_URL')}"
    )
    g.add_argument(
        "--issuer",
        metavar="URL",
        help="instead of --token-url: the authorization server's issuer identifier; its "
        "metadata (RFC 8414 / OpenID) gives the token endpoint and, without --auth, the "
        f"client authentication {_env_help('ISSUER')}",
    )
    g.add_argument(
        "--grant",
        choices=GRANTS,
        help="client_credentials (the default), jwt_bearer (RFC 7523: a signed "
        "assertion, see --assertion-issuer) or token_exchange (RFC 8693: trade a platform "
        f"token, see --subject-token-file) {_env_help('GRANT')}",
    )
    g.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help=f"scope to request; repeat it or separate with spaces {_env_help('SCOPE')}",
    )
    g.add_argument(
        "--audience",
        action="append",
        default=[],
        metavar="VALUE",
        help="client_credentials and token_exchange: an 'audience' form parameter (Auth0, "
        "RFC 8693), may repeat; jwt_bearer: the assertion's aud (default: the token URL) "
        f"{_env_help('AUDIENCE')}",
    )
    g.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="URI",
        help=f"RFC 8707 resource indicator, may repeat {_env_help('RESOURCE')}",
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra form parameter for the token request, may repeat",
    )

    g = p.add_argument_group("client authentication")
    g.add_argument("--client-id", metavar="ID", help=f"the client id {_env_help('CLIENT_ID')}")
    g.add_argument(
        "--auth",
        choices=AUTH_METHODS,
        help="basic (client_secret_basic), post (client_secret_post), client_secret_jwt, "
        "private_key_jwt, client_assertion (a platform's JWT, see --client-assertion-file); "
        "default: basic with a secret, private_key_jwt with only a key, client_assertion "
        f"with only --client-assertion-file {_env_help('AUTH')}",
    )
    g.add_argument(
        "--client-secret-env",
        metavar="NAME",
        help=f"read the client secret from environment variable NAME (default: "
        f"{ENV_PREFIX}CLIENT_SECRET, if set)",
    )
    g.add_argument(
        "--client-secret-file",
        metavar="PATH",
        help="read the client secret from a file ('-': standard input); a final newline is "
        f"dropped {_env_help('CLIENT_SECRET_FILE')}",
    )
    g.add_argument(
        "--client-assertion-file",
        metavar="PATH",
        help="authenticate with the JWT the platform keeps in this file (a Kubernetes "
        "projected service-account token, a SPIFFE JWT-SVID), read again for each token "
        f"request: no secret {_env_help('CLIENT_ASSERTION_FILE')}",
    )
    g.add_argument(
        "--assertion-audience",
        metavar="AUD",
        help="aud of the client assertion for client_secret_jwt / private_key_jwt (default: "
        "the token URL; some servers want their issuer identifier)",
    )

    g = p.add_argument_group("signing key (private_key_jwt, jwt_bearer)")
    g.add_argument(
        "--key-file",
        metavar="PATH",
        help=f"private key: PEM, DER or a JWK (JSON) {_env_help('KEY_FILE')}",
    )
    g.add_argument(
        "--key-password-env",
        metavar="NAME",
        help=f"read the key's password from environment variable NAME (default: "
        f"{ENV_PREFIX}KEY_PASSWORD, if set)",
    )
    g.add_argument(
        "--algorithm",
        metavar="ALG",
        help="RS256, PS256, ES256, EdDSA, ... (default: from the key; HS256 for "
        f"client_secret_jwt) {_env_help('ALGORITHM')}",
    )
    g.add_argument(
        "--key-id", metavar="KID", help=f"the kid header of assertions {_env_help('KEY_ID')}"
    )
    g.add_argument(
        "--certificate-file",
        metavar="PATH",
        help="the key's X.509 certificate (PEM or DER): adds the x5t#S256 header "
        f"(Microsoft Entra ID) {_env_help('CERTIFICATE_FILE')}",
    )

    g = p.add_argument_group("JWT-bearer grant (--grant jwt_bearer)")
    g.add_argument(
        "--assertion-issuer",
        metavar="ISS",
        help=f"the assertion's iss {_env_help('ASSERTION_ISSUER')}",
    )
    g.add_argument("--subject", metavar="SUB", help=f"the assertion's sub {_env_help('SUBJECT')}")
    g.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra assertion claim (a string), may repeat; Google wants "
        "--claim scope='https://www.googleapis.com/auth/...'",
    )
    g.add_argument(
        "--service-account-file",
        metavar="PATH",
        help="a Google service account key (JSON): sets the token URL, --grant jwt_bearer, "
        "issuer and subject (client_email), key, key id, RS256 "
        f"{_env_help('SERVICE_ACCOUNT_FILE')}",
    )

    g = p.add_argument_group("token exchange (--grant token_exchange, RFC 8693)")
    type_names = ", ".join(TOKEN_TYPES)
    g.add_argument(
        "--subject-token-file",
        metavar="PATH",
        help="the token to exchange, read from this file for each request "
        f"{_env_help('SUBJECT_TOKEN_FILE')}",
    )
    g.add_argument(
        "--subject-token-type",
        metavar="TYPE",
        help=f"its type: a URI or one of {type_names} {_env_help('SUBJECT_TOKEN_TYPE')}",
    )
    g.add_argument(
        "--actor-token-file",
        metavar="PATH",
        help=f"the actor token, if any, read from this file {_env_help('ACTOR_TOKEN_FILE')}",
    )
    g.add_argument(
        "--actor-token-type",
        metavar="TYPE",
        help=f"the actor token's type {_env_help('ACTOR_TOKEN_TYPE')}",
    )
    g.add_argument(
        "--requested-token-type",
        metavar="TYPE",
        help=f"the type of token to ask for {_env_help('REQUESTED_TOKEN_TYPE')}",
    )

    g = p.add_argument_group("DPoP (RFC 9449): tokens bound to a key")
    g.add_argument(
        "--dpop",
        action="store_true",
        help="prove possession of a key: a DPoP proof on the token request (and, for "
        "'request', on the API request); the token is bound to the key and sent as "
        "'Authorization: DPoP'. Without --dpop-key-file the key is generated for this run "
        "and forgotten when it ends (so a printed token is for inspection only)",
    )
    g.add_argument(
        "--dpop-key-file",
        metavar="PATH",
        help="the DPoP private key, unencrypted: PEM, DER or a JWK (JSON), EC, Ed25519 or "
        f"RSA; the algorithm comes from the key; implies --dpop {_env_help('DPOP_KEY_FILE')}",
    )

    g = p.add_argument_group("TLS and network")
    g.add_argument(
        "--ca-file",
        metavar="PATH",
        help="trust only the CA certificates in this PEM file, for the token endpoint and "
        f"the API (default: the certifi bundle httpx uses) {_env_help('CA_FILE')}",
    )
    g.add_argument(
        "--cert",
        metavar="PATH",
        help=f"client certificate (PEM) for mutual TLS {_env_help('CERT')}",
    )
    g.add_argument(
        "--cert-key",
        metavar="PATH",
        help=f"its private key, if not in --cert (unencrypted PEM) {_env_help('CERT_KEY')}",
    )
    g.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="FOR TEST RIGS ONLY: allow plain http:// token endpoints and API URLs on hosts "
        "other than loopback (127.0.0.1, ::1 and localhost need no flag). The client secret, "
        "assertions and tokens then cross the network unencrypted; never use it in production",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="timeout of each network operation (default: %(default)s)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="retries of a token request that failed for a passing reason (default: "
        "%(default)s; 0 for none)",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``httpx-tokenauth`` command."""
    top = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    token = commands.add_parser(
        "token",
        help="fetch an access token and print it",
        description="Fetch an access token and print it alone on stdout, for\n"
        '  curl -H "Authorization: Bearer $(httpx-tokenauth token)" ...\n'
        "or its metadata with --json.",
        epilog=_TOKEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out = token.add_argument_group("output")
    out.add_argument(
        "--json",
        action="store_true",
        help="print token_type, expires_in, expires_at, scope and, for a JWT, its header and "
        "claims decoded WITHOUT verifying the signature (unverified_header, "
        "unverified_claims); the token itself only with --show-token",
    )
    out.add_argument(
        "--show-token", action="store_true", help="with --json, include the access token"
    )
    _add_provider_options(token)

    request = commands.add_parser(
        "request",
        help="make one authenticated request and print the response",
        description="Make one request with a bearer token and print the response. It goes\n"
        "through TokenAuth: a 401 renews the token and replays the request once.",
        epilog=_REQUEST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    request.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    request.add_argument("url", metavar="URL", help="the API URL (https, or http to loopback)")
    r = request.add_argument_group("request")
    r.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header, may repeat",
    )
    body = r.add_mutually_exclusive_group()
    body.add_argument("--data", metavar="DATA", help="request body; @PATH reads it from a file")
    body.add_argument("--json-body", metavar="JSON", help="a JSON request body")
    r.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show what is sent, and why each token is fetched, on stderr",
    )
    r.add_argument("--fail", action="store_true", help="exit 1 when the status is 400 or above")
    _add_provider_options(request)

    discover = commands.add_parser(
        "discover",
        help="read an authorization server's metadata and show what would be used",
        description="Fetch the metadata of the authorization server whose issuer is ISSUER\n"
        "(RFC 8414, then OpenID Discovery), check it as TokenAuth does, and show what it\n"
        "says and what a grant configured with --issuer ISSUER would use. Nothing is sent\n"
        "to the token endpoint. Give the client options (--client-id and a secret or a key)\n"
        "to see the client authentication chosen for them.",
        epilog=_DISCOVER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    discover.add_argument("discover_issuer", metavar="ISSUER", help="the issuer identifier")
    discover.add_argument("--json", action="store_true", help="print it as JSON")
    _add_provider_options(discover)

    commands.add_parser(
        "demo",
        help="see TokenAuth work against a local authorization server and API",
        description="Start an OAuth 2.0 authorization server (authlib) and an API on\n"
        "https://127.0.0.1 and show, step by step, what TokenAuth sends and what the\n"
        "servers count: one token for many requests, renewal before expiry, a revoked\n"
        "token replaced after a 401, 100 concurrent requests sharing one token request.",
        epilog=_DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return top


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    stdout, stderr = sys.stdout, sys.stderr
    try:
        if args.command == "demo":
            from . import _demo  # noqa: PLC0415  (only the demo needs it)

            return _demo.run(stdout)
        if args.command == "token":
            return _token_command(args, stdout)
        if args.command == "discover":
            return _discover_command(args, stdout)
        return _request_command(args, stdout, stderr)
    except (UsageError, ConfigurationError) as exc:
        _fail(stderr, exc)
        return EXIT_USAGE
    except (CommandError, TokenError) as exc:
        _fail(stderr, exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def _fail(stderr: TextIO, exc: BaseException) -> None:
    message = " ".join(str(exc).split()) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in message:
        message += (
            " (the server's certificate is not trusted: pass --ca-file with the CA "
            "certificate that issued it)"
        )
    stderr.write(f"{PROG}: error: {message}\n")


# -- token ------------------------------------------------------------------------------


def _token_command(args: argparse.Namespace, stdout: TextIO) -> int:
    if args.show_token and not args.json:
        raise UsageError("--show-token goes with --json (without --json only the token is printed)")
    provider = build_provider(args)
    dpop = build_dpop(args)
    with _clients(args) as (token_client, _):
        auth = TokenAuth(
            provider,
            token_client=token_client,
            retry=_retry(args),
            dpop=dpop.dpop if dpop else None,
        )
        with _dpop_errors(args):
            token = auth.get_token()
    if not args.json:
        stdout.write(token.access_token + "\n")
        if dpop is not None:
            note = (
                ""
                if dpop.from_file
                else "; the key was generated for this run and is gone: pass --dpop-key-file "
                "PATH to keep using the token"
            )
            sys.stderr.write(
                f"{PROG}: token_type {token.token_type}, bound to the key with thumbprint "
                f"(jkt) {dpop.jkt}{note}\n"
            )
        return EXIT_OK
    info = token_info(token, show_token=args.show_token)
    if dpop is not None:
        info["dpop_jkt"] = dpop.jkt
        info["dpop_algorithm"] = dpop.dpop.algorithm
    stdout.write(json.dumps(info, indent=2) + "\n")
    return EXIT_OK


@dataclass(frozen=True)
class _DPoPKey:
    """The DPoP configuration of a command and its key's RFC 7638 thumbprint."""

    dpop: DPoP
    jkt: str
    from_file: bool


def build_dpop(args: argparse.Namespace) -> _DPoPKey | None:
    """DPoP(...) from --dpop / --dpop-key-file, or None; refusals name the option."""
    path, path_origin = _opt_from(args, "dpop_key_file", "DPOP_KEY_FILE")
    if path is None:
        if not args.dpop:
            return None
        key: Any = generate_key("ES256")
        return _DPoPKey(DPoP(key, algorithm="ES256"), thumbprint(public_jwk(key)), False)
    origin = (
        f"--dpop-key-file {path}" if path_origin.startswith("--") else f"{path_origin} ({path})"
    )
    raw = _read_file(path, "DPoP key file")
    data: bytes | str = raw.decode("utf-8", "replace") if raw.lstrip().startswith(b"{") else raw
    try:
        key, algorithm, _ = load_signing_key(data, algorithm=None, password=None)
        dpop = DPoP(key, algorithm=algorithm)
    except KeyConfigurationError as exc:
        if exc.reason == "password_needed":
            raise UsageError(
                f"{origin}: the key is encrypted: a DPoP key file is read without a password; "
                "store the key unencrypted, readable only by you (chmod 600)"
            ) from None
        raise UsageError(
            f"{origin}: {exc.problem}: the file must hold an unencrypted EC (P-256, P-384, "
            "P-521), Ed25519 or RSA private key as PEM, DER or a private JWK (JSON)"
        ) from None
    except ConfigurationError as exc:
        raise UsageError(f"{origin}: {exc}") from None
    return _DPoPKey(dpop, thumbprint(public_jwk(key)), True)


@contextmanager
def _dpop_errors(args: argparse.Namespace) -> Iterator[None]:
    """A token the server did not bind, in the command line's terms."""
    try:
        yield
    except DPoPNotBoundError:
        flag = "--dpop-key-file" if _opt(args, "dpop_key_file", "DPOP_KEY_FILE") else "--dpop"
        raise CommandError(
            f"{flag}: the authorization server ignored the DPoP proof and issued a token that "
            "is not bound to the key (token_type Bearer); refusing it. Enable DPoP for this "
            f"client on the server, or drop {flag} to use a bearer token"
        ) from None


def token_info(
    token: Token, *, show_token: bool = False, now: float | None = None
) -> dict[str, Any]:
    """What ``token --json`` prints: the token's metadata, and a JWT's unverified contents."""
    now = time.time() if now is None else now
    info: dict[str, Any] = {"token_type": token.token_type}
    if token.expires_at is not None:
        info["expires_in"] = round(token.expires_at - now)
        info["expires_at"] = _iso(token.expires_at)
    else:
        info["expires_in"] = info["expires_at"] = None
    info["scope"] = " ".join(token.scope) if token.scope else None
    if token.issued_token_type is not None:
        info["issued_token_type"] = token.issued_token_type
    if token.extra:
        # Names only: the values may be a refresh token or an ID token.
        info["other_fields"] = sorted(token.extra)
    decoded = unverified_jwt(token.access_token)
    if decoded is not None:
        info["unverified_header"], info["unverified_claims"] = decoded
        info["unverified_note"] = (
            "decoded from the access token WITHOUT checking its signature: for "
            "inspection only, never for decisions"
        )
    if show_token:
        info["access_token"] = token.access_token
    return info


def unverified_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a JWS compact JWT, NOT verified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (json.loads(_b64url(part)) for part in parts[:2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return None
    return header, claims


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


# -- discover ---------------------------------------------------------------------------


def _discover_command(args: argparse.Namespace, stdout: TextIO) -> int:
    if args.issuer is not None or args.token_url is not None:
        raise UsageError("discover takes the issuer as its argument: drop --issuer/--token-url")
    args.issuer = args.discover_issuer
    args.token_url = None
    has_client = _opt(args, "client_id", "CLIENT_ID") is not None and bool(
        args.client_secret_env
        or args.client_secret_file
        or _has_default_secret()
        or _opt(args, "key_file", "KEY_FILE")
        or _opt(args, "service_account_file", "SERVICE_ACCOUNT_FILE")
    )
    if has_client:
        provider = build_provider(args)
    else:  # only the metadata: a stand-in grant, never used to send anything
        issuer = _as_issuer(args)
        assert issuer is not None  # noqa: S101 - args.issuer was just set
        provider = ClientCredentials.from_issuer(
            issuer,
            client_id="discover",
            client_secret="x" * 64,
            allow_insecure_http=args.allow_insecure_http,
        )
    with _clients(args) as (token_client, _):
        auth = TokenAuth(provider, token_client=token_client, retry=_retry(args))
        metadata, resolved = auth._discover()
    info = discovery_info(metadata, resolved if has_client else None)
    if args.json:
        stdout.write(json.dumps(info, indent=2) + "\n")
        return EXIT_OK
    width = max(len(k) for k in info)
    for name, value in info.items():
        if isinstance(value, dict):
            stdout.write(f"{name}:\n")
            for k, v in value.items():
                stdout.write(f"  {k:<{width}} {_shown(v)}\n")
        else:
            stdout.write(f"{name:<{width + 2}} {_shown(value)}\n")
    return EXIT_OK


def _shown(value: object) -> str:
    if value is None:
        return "(not given)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def discovery_info(metadata: ServerMetadata, resolved: object | None) -> dict[str, Any]:
    """What ``discover`` prints: what the metadata says, and what would be used."""
    info: dict[str, Any] = {
        "issuer": metadata.issuer,
        "metadata_url": metadata.url,
        "token_endpoint": metadata.token_endpoint,
        "token_endpoint_auth_methods_supported": _listed(
            metadata.token_endpoint_auth_methods_supported
        ),
        "token_endpoint_auth_signing_alg_values_supported": _listed(
            metadata.token_endpoint_auth_signing_alg_values_supported
        ),
        "grant_types_supported": _listed(metadata.grant_types_supported),
        "dpop_signing_alg_values_supported": _listed(metadata.dpop_signing_alg_values_supported),
        "cached_for_seconds": round(metadata.max_age),
    }
    used: dict[str, Any] = {"token_endpoint": metadata.token_endpoint}
    client_auth = getattr(resolved, "_client_auth", None)
    if resolved is None:
        used["client_authentication"] = (
            "chosen for the credentials: pass --client-id and a secret or --key-file to see it"
        )
    elif client_auth is None:
        used["client_authentication"] = "none"
    else:
        used["client_authentication"] = client_auth.method
        algorithm = getattr(client_auth, "algorithm", None)
        if algorithm is not None:
            used["signing_algorithm"] = algorithm
            used["assertion_audience"] = getattr(client_auth, "_audience", None) or (
                metadata.token_endpoint
            )
    audience = getattr(resolved, "audience", None)
    if isinstance(resolved, JWTBearerGrant) and isinstance(audience, str):
        used["grant_assertion_audience"] = audience
    info["would_use"] = used
    return info


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


# -- request ----------------------------------------------------------------------------


def _request_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    headers = _headers(args.header)
    content: bytes | None = None
    if args.data is not None:
        content = (
            _read_file(args.data[1:], "request body file")
            if args.data.startswith("@")
            else args.data.encode()
        )
    elif args.json_body is not None:
        try:
            json.loads(args.json_body)
        except ValueError as exc:
            raise UsageError(f"--json-body is not valid JSON: {exc}") from None
        content = args.json_body.encode()
        headers.setdefault("Content-Type", "application/json")
    if not _HTTP_TOKEN.fullmatch(args.method):
        raise UsageError(
            f"METHOD {args.method[:20]!r} is not an HTTP method: a name such as GET, POST or "
            "PUT (letters, digits and !#$%&'*+-.^_`|~; no spaces)"
        )
    if not args.url.lower().startswith(("https://", "http://")):
        raise UsageError(
            f"the URL must start with https:// (or http:// to loopback), got {args.url[:60]!r}"
        )
    provider = build_provider(args)
    dpop = build_dpop(args)
    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    if args.verbose:
        hooks["request"].append(lambda request: _show_request(request, stderr))
        hooks["response"].append(lambda response: _show_status(response, stderr, "< "))
    with _clients(args) as (token_client, verify), _fetches_shown(stderr, args.verbose):
        auth = TokenAuth(
            provider,
            token_client=token_client,
            retry=_retry(args),
            allow_insecure_http=args.allow_insecure_http,
            dpop=dpop.dpop if dpop else None,
        )
        with (
            _dpop_errors(args),
            httpx.Client(
                auth=auth, verify=verify, timeout=args.timeout, event_hooks=hooks
            ) as client,
        ):
            try:
                response = client.request(
                    args.method.upper(), args.url, headers=headers, content=content
                )
            except httpx.InvalidURL as exc:
                raise UsageError(f"invalid URL {args.url!r}: {exc}") from None
            except InsecureTransportError:
                raise UsageError(
                    f"the API URL {_short_url(args.url)!r} uses plain http: the bearer token "
                    "must travel over TLS (RFC 6750 §5.3). Use https://, or, on a test rig whose "
                    "API is not on loopback, pass --allow-insecure-http"
                ) from None
            except httpx.HTTPError as exc:
                raise CommandError(
                    f"request to {_short_url(args.url)} failed: {type(exc).__name__}: "
                    f"{root_cause(exc)[:300]}"
                ) from None
    if response.history and args.verbose:
        stderr.write(
            f"* the API answered {response.history[0].status_code}: TokenAuth fetched a new "
            "token and replayed the request\n"
        )
    _show_status(response, stdout, "")
    for name, value in _raw_headers(response.headers):
        stdout.write(f"{name}: {value}\n")
    stdout.write("\n")
    text = response.text
    stdout.write(text if not text or text.endswith("\n") else text + "\n")
    if args.fail and response.status_code >= 400:
        stderr.write(f"{PROG}: error: the API answered {response.status_code}\n")
        return EXIT_FAILURE
    return EXIT_OK


class _FetchLines(logging.Handler):
    """The library's token records, as ``* ...`` lines for ``request -v`` (no secret in them)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) is not None:  # the library's own records
            self.out.write(f"* {fetch_line(record)}\n")


def fetch_line(record: logging.LogRecord) -> str:
    """One line for a log record of the library: what happened to which token request, and why."""
    fields = record.__dict__
    event = fields.get("event")
    if event not in ("token_fetched", "token_request_failed"):
        return " ".join(record.getMessage().split())
    status = fields.get("status_code")
    parts = [
        "token fetched" if event == "token_fetched" else "token request failed",
        f"(reason: {fields.get('reason')}, attempt {fields.get('attempt')}):",
        str(fields.get("outcome")) if status is None else f"{fields.get('outcome')}, HTTP {status}",
    ]
    if isinstance(duration := fields.get("duration"), float):
        parts.append(f"in {duration:.3f} s")
    if isinstance(expires_in := fields.get("expires_in"), float):
        parts.append(f"- expires in {round(expires_in)} s")
    limits = [
        f"{label} {value:g}{unit}"
        for label, name, unit in (
            ("rate limit", "rate_limit_limit", ""),
            ("remaining", "rate_limit_remaining", ""),
            ("resets in", "rate_limit_reset", " s"),
            ("Retry-After", "retry_after", " s"),
        )
        if isinstance(value := fields.get(name), (int, float))
    ]
    if limits:
        parts.append(f"- {', '.join(limits)}")
    return " ".join(parts)


@contextmanager
def _fetches_shown(out: TextIO, verbose: bool) -> Iterator[None]:
    """With -v, the library's token records go to ``out`` while the request runs."""
    if not verbose:
        yield
        return
    library = logging.getLogger("httpx_tokenauth")
    handler, level = _FetchLines(out), library.level
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        library.removeHandler(handler)
        library.setLevel(level)


#: RFC 9110 §9.1: a method name is a token.
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(values: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"-H wants 'Name: value', got {name.strip()[:40]!r} without a colon")
        headers[name.strip()] = rest.strip()
    return headers


def _show_request(request: httpx.Request, out: TextIO) -> None:
    out.write(f"> {request.method} {request.url}\n")
    for name, value in _raw_headers(request.headers):
        out.write(f"> {name}: {shorten_header(name, value)}\n")


def _raw_headers(headers: httpx.Headers) -> list[tuple[str, str]]:
    """The headers with their names spelled as sent."""
    encoding = headers.encoding
    return [(k.decode(encoding), v.decode(encoding)) for k, v in headers.raw]


def _show_status(response: httpx.Response, out: TextIO, prefix: str) -> None:
    out.write(f"{prefix}{response.http_version} {response.status_code} {response.reason_phrase}\n")


def shorten_header(name: str, value: str) -> str:
    """A request header as it may be shown: credentials cut to a recognisable prefix."""
    if name.lower() not in SENSITIVE_HEADERS:
        return value
    if name.lower() == "dpop":
        return f"{value[:8]}... (proof, shortened)"
    scheme, _, credentials = value.partition(" ")
    if name.lower() != "cookie" and credentials:
        return f"{scheme} {credentials[:8]}... (shortened)"
    return "[redacted]"


def _short_url(url: str) -> str:
    """The URL for a message: no query, no fragment, and never a user name or password."""
    return redacted_url(url) if "@" in url else url.split("?", 1)[0].split("#", 1)[0]


# -- building the provider from flags and environment -----------------------------------
#
# Each value comes from a flag, an environment variable or a file, and feeds one
# constructor argument. The library refuses bad arguments with advice about its
# Python API (password=..., allow_insecure_http=True); the command line checks
# each argument where it knows which flag or variable fed it, and gives the
# same advice in terms of its own options. Refusals are told apart by their
# type (InsecureTransportError; KeyConfigurationError and its ``reason``) and by
# which argument was being checked, never by the wording of a message.


def _env(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name) or None


def _opt(args: argparse.Namespace, attr: str, env: str) -> str | None:
    return _opt_from(args, attr, env)[0]


def _opt_from(args: argparse.Namespace, attr: str, env: str) -> tuple[str | None, str]:
    """A value and where it came from: the flag (``--key-id``) or the variable's name."""
    value: str | None = getattr(args, attr, None)
    if value is not None:
        return value, "--" + attr.replace("_", "-")
    return _env(env), ENV_PREFIX + env


def _multi_from(values: Sequence[str], env: str, flag: str) -> tuple[list[str], str]:
    if values:
        return [item for value in values for item in value.split()], flag
    text = _env(env)
    return ([] if text is None else text.split()), ENV_PREFIX + env


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} wants NAME=VALUE, got {name[:40]!r} without '='")
        if name in pairs:
            raise UsageError(f"{flag} {name}=... is given twice: pass each name once")
        pairs[name] = rest
    return pairs


def _read_file(path: str, what: str) -> bytes:
    if path == "-":
        return (
            sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        )
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def _text(value: str, origin: str, what: str) -> str:
    """``value`` if it has a UTF-8 form; a variable holding undecodable bytes does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{origin}: the {what} is not valid UTF-8 text (bytes the environment could "
            "not decode): set it again as UTF-8"
        ) from None
    return value


@dataclass(frozen=True)
class _Key:
    """A signing key as the library takes it, without showing it, and where each part
    came from (for messages)."""

    data: bytes | str
    password: str | None
    algorithm: str | None
    key_id: str | None
    certificate: bytes | None
    origin: str
    password_origin: str | None
    algorithm_origin: str
    key_id_origin: str
    certificate_origin: str

    def __repr__(self) -> str:
        return f"<key {self.algorithm or '(algorithm from the key)'}>"


@dataclass(frozen=True)
class _Origins:
    """Where the values that a refusal can be about came from, as the user named them."""

    key: _Key | None = None
    secret: str = "the client secret"


@contextmanager
def _in_cli_terms(origins: _Origins, default: str) -> Iterator[None]:
    """Re-raise the library's refusals as usage errors that name the flag or variable.

    A KeyConfigurationError names its rule (``reason``), so its advice is
    rewritten for the command line; any other ConfigurationError is about
    ``default``, the value being checked, and keeps its message.
    """
    try:
        yield
    except KeyConfigurationError as exc:
        raise UsageError(_key_advice(exc, origins, default)) from None
    except ConfigurationError as exc:
        raise UsageError(f"{default}: {exc}") from None


def _key_advice(exc: KeyConfigurationError, origins: _Origins, default: str) -> str:
    """A key, algorithm, password, certificate or secret refusal in the CLI's terms."""
    problem, fits = exc.problem, " or ".join(exc.suggestions)
    key = origins.key
    algorithm = key.algorithm_origin if key else default
    if exc.reason == "secret_too_short":
        return (
            f"{origins.secret}: {problem}: ask the authorization server for a longer secret "
            "(HS256 needs the fewest bytes, 32), or sign with a private key instead "
            "(--auth private_key_jwt --key-file PATH)"
        )
    if exc.reason == "private_key_algorithm":
        return (
            f"{algorithm}: {problem}: use it with --auth private_key_jwt and "
            "--key-file PATH; --auth client_secret_jwt signs with HS256, HS384 or HS512"
        )
    if exc.reason == "shared_secret_algorithm":
        return (
            f"{algorithm}: {problem}: HS256/HS384/HS512 go with --auth "
            f"client_secret_jwt and a client secret ({_SECRET_OPTIONS}); with --key-file, "
            "pass a private-key algorithm such as ES256, PS256 or RS256, or leave "
            "--algorithm out and the key decides"
        )
    if key is None:  # pragma: no cover - every other reason is about a key
        return f"{default}: {exc}"
    password = key.password_origin
    drop_password = (
        f"drop {password.split()[0]}"
        if password and password.startswith("--")
        else f"unset {password or ENV_PREFIX + 'KEY_PASSWORD'}"
    )
    advice = {
        "jwk_not_json": f"{key.origin}: {problem}: a JWK key file holds one JSON object",
        "key_empty": f"{key.origin}: the key is empty: the file must hold the private key "
        "(PEM, DER or a private JWK)",
        "password_needed": f"{key.origin}: {problem}: put its password in an environment "
        f"variable and pass --key-password-env NAME (or set {ENV_PREFIX}KEY_PASSWORD)",
        "password_not_needed": f"{key.origin}: the key is not encrypted, but {password} "
        f"gives a password for it: {drop_password}",
        "password_wrong": f"{key.origin}: {problem} (the password comes from {password})",
        "key_unreadable": f"{key.origin}: {problem}: the file must hold a private key as PEM "
        "(PKCS#8, PKCS#1 or SEC1), DER or a private JWK (JSON)",
        "jwk_shared_secret": f"{key.origin}: {problem}: a shared secret goes in "
        f"{ENV_PREFIX}CLIENT_SECRET (or --client-secret-env / --client-secret-file), "
        "with --auth client_secret_jwt",
        "jwk_algorithm": f"{key.algorithm_origin}: {problem}: leave --algorithm out (the "
        f"JWK's {fits} is used) or pass --algorithm {fits}",
        "key_algorithm_mismatch": f"{key.algorithm_origin}: {problem}: "
        + (
            f"pass --algorithm {fits} (or leave --algorithm out and the key decides), or "
            if fits
            else "pass "
        )
        + f"a key file that fits (now {key.origin})",
        "certificate_unreadable": f"{key.certificate_origin}: {problem}: the file must hold "
        "the key's X.509 certificate, PEM or DER",
        "certificate_mismatch": f"{key.certificate_origin}: {problem} ({key.origin}): pass "
        "the certificate issued for that key",
        "key_id_mismatch": f"{key.key_id_origin}: {problem}: pass --key-id {fits}, or "
        "leave --key-id out and the JWK's kid is used",
    }
    return advice.get(exc.reason, f"{key.origin}: {exc}")


_SECRET_OPTIONS = (
    f"{ENV_PREFIX}CLIENT_SECRET, --client-secret-env NAME or --client-secret-file PATH"
)
#: The flag that sets what a reserved token-request parameter would.
_PARAM_FLAGS = {
    "grant_type": "--grant",
    "scope": "--scope",
    "audience": "--audience",
    "resource": "--resource",
    "client_id": "--client-id",
    "client_secret": _SECRET_OPTIONS,
    "client_assertion": "--client-assertion-file, or --auth private_key_jwt or client_secret_jwt",
    "client_assertion_type": "--client-assertion-file, or --auth private_key_jwt or "
    "client_secret_jwt",
    "assertion": "--grant jwt_bearer",
    "subject_token": "--subject-token-file",
    "subject_token_type": "--subject-token-type",
    "actor_token": "--actor-token-file",
    "actor_token_type": "--actor-token-type",
    "requested_token_type": "--requested-token-type",
}
#: The flag that sets what a claim the library computes would.
_CLAIM_FLAGS = {
    "iss": "--assertion-issuer",
    "sub": "--subject",
    "aud": "--audience",
}


def _as_issuer(args: argparse.Namespace) -> str | None:
    """--issuer (or HTTPX_TOKENAUTH_ISSUER): the authorization server's issuer, checked."""
    issuer, origin = _opt_from(args, "issuer", "ISSUER")
    token_url, url_origin = _opt_from(args, "token_url", "TOKEN_URL")
    if issuer is None or (
        token_url is not None and url_origin.startswith("--") and not origin.startswith("--")
    ):
        return None  # --token-url given: it wins over HTTPX_TOKENAUTH_ISSUER
    if token_url is not None and origin.startswith("--") == url_origin.startswith("--"):
        raise UsageError(
            f"{origin} and {url_origin} both say where tokens come from: give one of them"
        )
    if "://" not in issuer:
        raise UsageError(
            f"{origin} {issuer[:60]!r} is not a URL: it is the authorization server's issuer "
            "identifier, such as https://as.example (the JWT-bearer assertion's iss is "
            "--assertion-issuer)"
        )
    try:
        return check_issuer(issuer, allow_insecure_http=args.allow_insecure_http)
    except InsecureTransportError:
        raise UsageError(
            f"{origin} {redacted_url(issuer)!r} uses plain http: the metadata that says where "
            "credentials go must come over TLS. Use https://, or, on a test rig whose server "
            "is not on loopback, pass --allow-insecure-http"
        ) from None
    except ConfigurationError as exc:
        raise UsageError(f"{origin}: {exc}") from None


def _token_url(args: argparse.Namespace, account: Mapping[str, str] | None) -> str:
    """The token endpoint, checked as the library checks it, refusals in CLI terms."""
    token_url, origin = _opt_from(args, "token_url", "TOKEN_URL")
    if not token_url and account is not None:
        token_url = account.get("token_uri")
        origin = f"token_uri of {_account_origin(args)}"
    if not token_url:
        raise UsageError(
            "no token endpoint: pass --token-url URL or --issuer URL (or set "
            f"{ENV_PREFIX}TOKEN_URL or {ENV_PREFIX}ISSUER)"
        )
    try:
        parts = urlsplit(token_url)
        has_userinfo = parts.username is not None or parts.password is not None
    except ValueError:
        has_userinfo = False  # check_token_url says what is wrong with it
    if has_userinfo:
        raise UsageError(
            f"{origin} {redacted_url(token_url)!r} carries a user name or password; the "
            f"client id goes in --client-id (or {ENV_PREFIX}CLIENT_ID) and the secret in "
            f"{_SECRET_OPTIONS}, never in the URL"
        )
    try:
        check_token_url(token_url, allow_insecure_http=args.allow_insecure_http)
    except InsecureTransportError:
        raise UsageError(
            f"{origin} {redacted_url(token_url)!r} uses plain http: client credentials and "
            "tokens must travel over TLS (RFC 6749 §3.2). Use https://, or, on a test rig "
            "whose server is not on loopback, pass --allow-insecure-http"
        ) from None
    except ConfigurationError as exc:
        raise UsageError(f"{origin}: {exc}") from None
    return token_url


def _checked_scope(tokens: list[str], origin: str) -> list[str] | None:
    """The scope tokens; a refused one, or a repeated one, named in CLI terms."""
    if not tokens:
        return None
    try:
        normalize_scope(tokens)
    except ConfigurationError as exc:
        for token in tokens:
            try:
                normalize_scope([token])
            except ConfigurationError:
                raise UsageError(
                    f"{origin}: scope {token[:40]!r} is not allowed: RFC 6749 §3.3 scopes are "
                    "printable ASCII without '\"' or '\\'; pass one scope per --scope, or "
                    "several separated by spaces"
                ) from None
        repeated = sorted({t for t in tokens if tokens.count(t) > 1})
        if repeated:
            raise UsageError(
                f"{origin} names {', '.join(repeated)} more than once: pass each scope once"
            ) from None
        raise UsageError(f"{origin}: {exc}") from None
    return tokens


def _checked_multi(name: str, values: list[str], origin: str) -> list[str]:
    """Audience or resource values; a refused one, or a repeated one, named in CLI terms."""
    try:
        normalize_multi(name, values or None)
    except ConfigurationError as exc:
        for value in values:
            try:
                normalize_multi(name, value)
            except ConfigurationError as one:
                raise UsageError(f"{origin}: {one}") from None
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise UsageError(
                f"{origin} names {', '.join(repeated)} more than once: pass each {name} once"
            ) from None
        raise UsageError(f"{origin}: {exc}") from None
    return values


def _checked_params(params: dict[str, str]) -> dict[str, str] | None:
    """--param NAME=VALUE pairs: not one the command sets itself, not empty."""
    for name, value in params.items():
        if name in RESERVED_PARAMS or name in _PARAM_FLAGS:
            raise UsageError(
                f"--param {name}=... would set a parameter the command sets itself: use "
                f"{_PARAM_FLAGS.get(name, 'its own option')} instead"
            )
        if not value:
            raise UsageError(
                f"--param {name}= has no value, and RFC 6749 §3.2 omits parameters without "
                "one: give it a value or drop it"
            )
    return params or None


def _checked_claims(claims: dict[str, str]) -> dict[str, str]:
    """--claim NAME=VALUE pairs: not a claim the library computes for each assertion."""
    for name in claims:
        if name in RESERVED_CLAIMS:
            flag = _CLAIM_FLAGS.get(name)
            instead = f"use {flag} instead" if flag else "drop it"
            raise UsageError(
                f"--claim {name}=... would set a claim computed for each assertion: {instead}"
            )
    return claims


def _non_empty(value: str | None, origin: str, what: str) -> str | None:
    if value is not None and not value:
        raise UsageError(f"{origin} is empty: give the {what}, or leave it out")
    return value


def _method(
    method: str | None,
    grant: str,
    key: _Key | None,
    explicit_secret: bool,
    assertion_file: str | None = None,
) -> str | None:
    """The client authentication method: --auth, or what the secret, key or assertion file
    implies."""
    if assertion_file is not None:
        if method is None:
            if explicit_secret or _has_default_secret():
                raise UsageError(
                    "both a client secret and --client-assertion-file are given: pass --auth "
                    "to say which one authenticates the client"
                )
            if key is not None and grant != "jwt_bearer":
                raise UsageError(
                    "both --key-file and --client-assertion-file are given: pass --auth to say "
                    "which one authenticates the client"
                )
            return "client_assertion"
        if method != "client_assertion":
            raise UsageError(
                f"--client-assertion-file authenticates the client with the platform's JWT, "
                f"and --auth {method} says otherwise: drop one of them"
            )
    elif method == "client_assertion":
        raise UsageError(
            "--auth client_assertion reads the platform's JWT from --client-assertion-file "
            f"PATH (or {ENV_PREFIX}CLIENT_ASSERTION_FILE)"
        )
    if method is None:
        has_secret = explicit_secret or _has_default_secret()
        if has_secret and key is not None and grant == "client_credentials":
            raise UsageError(
                "both a client secret and --key-file are given: pass --auth to say which one "
                "authenticates the client"
            )
        if has_secret:
            method = "basic"
        elif key is not None and grant == "client_credentials":
            method = "private_key_jwt"
    if method == "private_key_jwt" and explicit_secret:
        raise UsageError("private_key_jwt signs with --key-file: drop --client-secret-env/-file")
    return method


def build_provider(
    args: argparse.Namespace,
) -> ClientCredentials | JWTBearerGrant | TokenExchangeGrant:
    """The provider that the token options (flags, then environment variables) describe.

    Raises UsageError for options that do not fit together or that the library
    refuses (with advice in terms of the options), CommandError for a file that
    cannot be read.
    """
    account = _service_account(args)
    as_issuer = _as_issuer(args)
    token_url = as_issuer if as_issuer is not None else _token_url(args, account)
    grant = _opt(args, "grant", "GRANT") or ("jwt_bearer" if account else "client_credentials")
    if grant not in GRANTS:
        raise UsageError(f"{ENV_PREFIX}GRANT must be one of {', '.join(GRANTS)}, got {grant!r}")
    method = _opt(args, "auth", "AUTH")
    if method is not None and method not in AUTH_METHODS:
        raise UsageError(
            f"{ENV_PREFIX}AUTH must be one of {', '.join(AUTH_METHODS)}, got {method!r}"
        )
    client_id, client_id_origin = _opt_from(args, "client_id", "CLIENT_ID")
    if client_id:
        _text(client_id, client_id_origin, "client id")
    key = _signing_key(args, account)
    explicit_secret = args.client_secret_env is not None or args.client_secret_file is not None
    scope = _checked_scope(*_multi_from(args.scope, "SCOPE", "--scope"))
    audience = _multi_from(args.audience, "AUDIENCE", "--audience")
    resource = _checked_multi("resource", *_multi_from(args.resource, "RESOURCE", "--resource"))
    extra_params = _checked_params(_pairs(args.param, "--param"))
    extra_claims = _checked_claims(_pairs(args.claim, "--claim"))

    assertion_file, assertion_origin = _opt_from(
        args, "client_assertion_file", "CLIENT_ASSERTION_FILE"
    )
    chosen = method
    method = _method(method, grant, key, explicit_secret, assertion_file)
    secret, secret_origin = (
        _client_secret(args) if method in SECRET_METHODS else (None, "the client secret")
    )
    origins = _Origins(key=key, secret=secret_origin)
    sources: dict[str, str] = {}  # a source's name -> the option that named it
    client_auth = _chosen_client_auth(
        args,
        method,
        key,
        origins,
        assertion=(assertion_file, assertion_origin),
        sources=sources,
        metadata_chooses=as_issuer is not None and chosen is None,
    )

    if grant == "token_exchange":
        return _token_exchange(
            args,
            as_issuer=as_issuer,
            token_url=token_url,
            client_id=client_id,
            method=method,
            secret=secret,
            client_auth=client_auth,
            key=key,
            scope=scope,
            audience=audience,
            resource=resource,
            extra_params=extra_params,
            extra_claims=extra_claims,
            sources=sources,
        )

    if grant == "client_credentials":
        if method is None:
            raise UsageError(
                "the client credentials grant needs client authentication: a client secret "
                f"({_SECRET_OPTIONS}) or a private key (--key-file, for private_key_jwt)"
            )
        if not client_id:
            raise UsageError(f"no client id: pass --client-id ID or set {ENV_PREFIX}CLIENT_ID")
        if extra_claims:
            raise UsageError("--claim is for the jwt_bearer grant's assertion")
        with _in_cli_terms(origins, "the token options"):
            return (ClientCredentials if as_issuer is None else ClientCredentials.from_issuer)(
                token_url,
                client_id=client_id,
                client_secret=secret,
                client_auth=client_auth,
                scope=scope,
                audience=_checked_multi("audience", *audience) or None,
                resource=resource or None,
                extra_params=extra_params,
                allow_insecure_http=args.allow_insecure_http,
            )

    if key is None:
        raise UsageError("the jwt_bearer grant signs an assertion: pass --key-file PATH")
    issuer = _opt(args, "assertion_issuer", "ASSERTION_ISSUER") or (account or {}).get(
        "client_email"
    )
    subject = _opt(args, "subject", "SUBJECT") or (account or {}).get("client_email")
    if not issuer or not subject:
        raise UsageError(
            "the jwt_bearer grant needs the assertion's --assertion-issuer and --subject "
            f"(or {ENV_PREFIX}ASSERTION_ISSUER and {ENV_PREFIX}SUBJECT)"
        )
    values = audience[0]
    if len(values) > 1:
        raise UsageError("the jwt_bearer grant's assertion takes one --audience")
    if method is not None and not client_id:
        raise UsageError(f"--auth {method} needs --client-id (or {ENV_PREFIX}CLIENT_ID)")
    with _in_cli_terms(origins, key.origin):
        return (JWTBearerGrant if as_issuer is None else JWTBearerGrant.from_issuer)(
            token_url,
            issuer=issuer,
            subject=subject,
            key=key.data,
            algorithm=key.algorithm,
            password=key.password,
            key_id=key.key_id,
            certificate=key.certificate,
            audience=values[0] if values else None,
            extra_claims=extra_claims or None,
            scope=scope,
            resource=resource or None,
            extra_params=extra_params,
            client_id=client_id,
            client_secret=secret,
            client_auth=client_auth,
            allow_insecure_http=args.allow_insecure_http,
        )


def _path_origin(origin: str, path: str) -> str:
    """``--flag PATH`` or ``VARIABLE (PATH)``: how the user pointed at a file."""
    return f"{origin} {path}" if origin.startswith("--") else f"{origin} ({path})"


def _file_source(path: str, origin: str, sources: dict[str, str]) -> FileAssertion:
    try:
        source = FileAssertion(path)
    except ConfigurationError as exc:
        raise UsageError(f"{origin}: {exc}") from None
    sources[source.name] = origin
    return source


@contextmanager
def _sources_in_cli_terms(sources: Mapping[str, str]) -> Iterator[None]:
    """A file that cannot be read or holds no token: exit 1, named by its option."""
    try:
        yield
    except AssertionSourceError as exc:
        origin = sources.get(exc.source)
        raise CommandError(f"{origin}: {exc}" if origin else str(exc)) from None


def _chosen_client_auth(
    args: argparse.Namespace,
    method: str | None,
    key: _Key | None,
    origins: _Origins,
    *,
    assertion: tuple[str | None, str],
    sources: dict[str, str],
    metadata_chooses: bool,
) -> ClientAuth | None:
    """The client authentication the options name: the platform's assertion file, a key
    or a secret; None for a secret with --issuer and no --auth (the metadata chooses,
    RFC 8414 token_endpoint_auth_methods_supported)."""
    assertion_file, assertion_origin = assertion
    if method == "client_assertion" and assertion_file is not None:
        return _client_assertion(
            args, _path_origin(assertion_origin, assertion_file), assertion_file, sources
        )
    if metadata_chooses and method in SECRET_METHODS:
        return None
    return _client_auth(method, key, args, origins)


def _client_assertion(
    args: argparse.Namespace, origin: str, path: str, sources: dict[str, str]
) -> ClientAssertion:
    """--client-assertion-file: the platform's JWT authenticates the client, read per request."""
    if args.assertion_audience is not None:
        raise UsageError(
            "--assertion-audience goes with --auth client_secret_jwt or private_key_jwt: "
            "the platform chose the audience of the token in --client-assertion-file"
        )
    source = _file_source(path, origin, sources)
    with _sources_in_cli_terms(sources):
        return ClientAssertion(source)


def _token_exchange(
    args: argparse.Namespace,
    *,
    as_issuer: str | None,
    token_url: str,
    client_id: str | None,
    method: str | None,
    secret: str | None,
    client_auth: ClientAuth | None,
    key: _Key | None,
    scope: list[str] | None,
    audience: tuple[list[str], str],
    resource: list[str],
    extra_params: dict[str, str] | None,
    extra_claims: dict[str, str],
    sources: dict[str, str],
) -> TokenExchangeGrant:
    """--grant token_exchange: the subject (and actor) token from files, their types."""
    if extra_claims:
        raise UsageError("--claim is for the jwt_bearer grant's assertion")
    if key is not None and method != "private_key_jwt":
        raise UsageError(
            "--key-file signs the client's assertion, which --grant token_exchange uses only "
            "with --auth private_key_jwt: drop --key-file, or pass --auth private_key_jwt"
        )
    if method is not None and not client_id:
        raise UsageError(f"--auth {method} needs --client-id (or {ENV_PREFIX}CLIENT_ID)")
    subject_path, subject_origin = _opt_from(args, "subject_token_file", "SUBJECT_TOKEN_FILE")
    if not subject_path:
        raise UsageError(
            "--grant token_exchange needs the token to exchange: --subject-token-file PATH "
            f"(or {ENV_PREFIX}SUBJECT_TOKEN_FILE) and --subject-token-type TYPE"
        )
    subject_type = _token_type(args, "subject_token_type", "SUBJECT_TOKEN_TYPE", required=True)
    subject = _file_source(subject_path, _path_origin(subject_origin, subject_path), sources)
    actor_path, actor_origin = _opt_from(args, "actor_token_file", "ACTOR_TOKEN_FILE")
    actor_type = _token_type(args, "actor_token_type", "ACTOR_TOKEN_TYPE", required=False)
    if (actor_path is None) != (actor_type is None):
        raise UsageError("--actor-token-file and --actor-token-type go together: pass both")
    actor = (
        None
        if actor_path is None
        else _file_source(actor_path, _path_origin(actor_origin, actor_path), sources)
    )
    requested = _token_type(args, "requested_token_type", "REQUESTED_TOKEN_TYPE", required=False)
    make = TokenExchangeGrant if as_issuer is None else TokenExchangeGrant.from_issuer
    with _sources_in_cli_terms(sources), _in_cli_terms(_Origins(), "the token options"):
        return make(
            token_url,
            subject_token=subject,
            subject_token_type=subject_type or "",
            actor_token=actor,
            actor_token_type=actor_type,
            requested_token_type=requested,
            audience=_checked_multi("audience", *audience) or None,
            resource=resource or None,
            scope=scope,
            extra_params=extra_params,
            client_id=client_id,
            client_secret=secret,
            client_auth=client_auth,
            allow_insecure_http=args.allow_insecure_http,
        )


def _token_type(args: argparse.Namespace, attr: str, env: str, *, required: bool) -> str | None:
    value, origin = _opt_from(args, attr, env)
    if value is None:
        if required:
            raise UsageError(
                f"--grant token_exchange needs --{attr.replace('_', '-')} (or {ENV_PREFIX}{env}): "
                f"a URI, or one of {', '.join(TOKEN_TYPES)}"
            )
        return None
    try:
        return token_type_uri(attr, value)
    except ConfigurationError:
        raise UsageError(
            f"{origin} {value[:60]!r} is not a token type: give a URI such as "
            f"urn:ietf:params:oauth:token-type:jwt, or one of {', '.join(TOKEN_TYPES)}"
        ) from None


def _client_auth(
    method: str | None, key: _Key | None, args: argparse.Namespace, origins: _Origins
) -> ClientAuth | None:
    audience = _non_empty(args.assertion_audience, "--assertion-audience", "assertion audience")
    if audience is not None and method not in ("client_secret_jwt", "private_key_jwt"):
        raise UsageError(
            "--assertion-audience goes with --auth client_secret_jwt or private_key_jwt"
        )
    if method == "basic":
        return ClientSecretBasic()
    if method == "post":
        return ClientSecretPost()
    if method == "client_secret_jwt":
        algorithm, algorithm_origin = _opt_from(args, "algorithm", "ALGORITHM")
        key_id, key_id_origin = _opt_from(args, "key_id", "KEY_ID")
        _non_empty(key_id, key_id_origin, "key id")
        with _in_cli_terms(origins, algorithm_origin):
            return ClientSecretJWT(algorithm=algorithm or "HS256", key_id=key_id, audience=audience)
    if method == "private_key_jwt":
        if key is None:
            raise UsageError("private_key_jwt needs the client's private key: pass --key-file PATH")
        with _in_cli_terms(origins, key.origin):
            return PrivateKeyJWT(
                key.data,
                algorithm=key.algorithm,
                password=key.password,
                key_id=key.key_id,
                certificate=key.certificate,
                audience=audience,
            )
    return None


def _has_default_secret() -> bool:
    return _env("CLIENT_SECRET") is not None or _env("CLIENT_SECRET_FILE") is not None


def _client_secret(args: argparse.Namespace) -> tuple[str, str]:
    """The client secret, from the one place it was pointed at, and that place. Never argv."""
    if args.client_secret_env is not None and args.client_secret_file is not None:
        raise UsageError("pass --client-secret-env or --client-secret-file, not both")
    if args.client_secret_env is not None:
        origin = f"--client-secret-env {args.client_secret_env}"
        return _text(_secret_from_env(args.client_secret_env), origin, "client secret"), origin
    path = args.client_secret_file
    origin = f"--client-secret-file {path}"
    if path is None and _env("CLIENT_SECRET") is None:
        path = _env("CLIENT_SECRET_FILE")
        origin = f"{ENV_PREFIX}CLIENT_SECRET_FILE ({path})"
    if path is not None:
        data = _read_file(path, "client secret file")
        try:
            secret = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise CommandError(f"client secret file {path!r} is not UTF-8 text") from None
        if not secret:
            raise CommandError(f"client secret file {path!r} is empty")
        return secret, origin
    if _env("CLIENT_SECRET_FILE") is not None:
        raise UsageError(
            f"both {ENV_PREFIX}CLIENT_SECRET and {ENV_PREFIX}CLIENT_SECRET_FILE are set: unset one"
        )
    value = _env("CLIENT_SECRET")
    if value is None:
        raise UsageError(
            f"this client authentication needs the client secret: set {_SECRET_OPTIONS}"
        )
    origin = f"{ENV_PREFIX}CLIENT_SECRET"
    return _text(value, origin, "client secret"), origin


def _secret_from_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(
            f"environment variable {name} is not set or empty (it should hold the secret)"
        )
    return value


def _service_account(args: argparse.Namespace) -> dict[str, str] | None:
    path = _opt(args, "service_account_file", "SERVICE_ACCOUNT_FILE")
    if path is None:
        return None
    data = _read_file(path, "service account file")
    try:
        account = json.loads(data)
    except ValueError:
        account = None
    fields = ("client_email", "private_key")
    if not isinstance(account, dict) or not all(isinstance(account.get(f), str) for f in fields):
        raise CommandError(
            f"{path!r} is not a service account key: expected JSON with client_email and "
            "private_key (download one from the Google Cloud console, Service accounts, Keys)"
        )
    account.setdefault("token_uri", GOOGLE_TOKEN_URI)
    return {k: v for k, v in account.items() if isinstance(v, str)}


def _account_origin(args: argparse.Namespace) -> str:
    """The service account file, as the user pointed at it."""
    path, origin = _opt_from(args, "service_account_file", "SERVICE_ACCOUNT_FILE")
    return f"{origin} {path}" if origin.startswith("--") else f"{origin} ({path})"


def _signing_key(args: argparse.Namespace, account: Mapping[str, str] | None) -> _Key | None:
    path, path_origin = _opt_from(args, "key_file", "KEY_FILE")
    if path is not None:
        raw = _read_file(path, "key file")
        data: bytes | str = raw.decode("utf-8") if raw.lstrip().startswith(b"{") else raw
        key_id = None
        origin = f"--key-file {path}" if path_origin.startswith("--") else f"{path_origin} ({path})"
    elif account is not None:
        data, key_id = account["private_key"], account.get("private_key_id")
        origin = f"private_key of {_account_origin(args)}"
    else:
        return None
    password_env = args.key_password_env
    if password_env:
        password: str | None = _secret_from_env(password_env)
        password_origin: str | None = f"--key-password-env {password_env}"
    else:
        password = _env("KEY_PASSWORD")
        password_origin = f"{ENV_PREFIX}KEY_PASSWORD" if password is not None else None
    if password is not None and password_origin is not None:
        _text(password, password_origin, "key password")
    cert_path, cert_origin = _opt_from(args, "certificate_file", "CERTIFICATE_FILE")
    certificate = None if cert_path is None else _read_file(cert_path, "certificate file")
    if cert_path is not None:
        cert_origin = (
            f"--certificate-file {cert_path}"
            if cert_origin.startswith("--")
            else f"{cert_origin} ({cert_path})"
        )
    algorithm, algorithm_origin = _opt_from(args, "algorithm", "ALGORITHM")
    if algorithm is None:
        algorithm_origin = f"the algorithm {origin} implies"
    else:
        with _in_cli_terms(_Origins(), algorithm_origin):
            check_algorithm(algorithm, hmac=False)
    flag_kid, key_id_origin = _opt_from(args, "key_id", "KEY_ID")
    _non_empty(flag_kid, key_id_origin, "key id")
    if flag_kid is None and key_id is not None:
        key_id_origin = f"private_key_id of {_account_origin(args)}"
    return _Key(
        data=data,
        password=password,
        algorithm=algorithm,
        key_id=flag_kid or key_id,
        certificate=certificate,
        origin=origin,
        password_origin=password_origin,
        algorithm_origin=algorithm_origin,
        key_id_origin=key_id_origin,
        certificate_origin=cert_origin,
    )


# -- clients ----------------------------------------------------------------------------


def _retry(args: argparse.Namespace) -> RetryPolicy | None:
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more, got {args.retries}")
    return RetryPolicy(attempts=args.retries + 1) if args.retries else None


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    ca_file = _opt(args, "ca_file", "CA_FILE")
    try:
        if ca_file is not None:
            context = ssl.create_default_context(cafile=ca_file)
        else:
            context = httpx.create_ssl_context()
    except FileNotFoundError:
        raise CommandError(f"cannot read CA file {ca_file!r}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"cannot use CA file {ca_file!r}: {exc}") from None
    cert = _opt(args, "cert", "CERT")
    cert_key = _opt(args, "cert_key", "CERT_KEY")
    if cert_key is not None and cert is None:
        raise UsageError("--cert-key goes with --cert")
    if cert is not None:
        try:
            context.load_cert_chain(cert, cert_key)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(
                f"cannot use client certificate {cert!r}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    return context


@contextmanager
def _clients(args: argparse.Namespace) -> Iterator[tuple[httpx.Client, ssl.SSLContext]]:
    """The token client (no redirects, our TLS settings), and the TLS context for the API."""
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout}")
    context = _ssl_context(args)
    with httpx.Client(verify=context, timeout=args.timeout, follow_redirects=False) as client:
        yield client, context
