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
import os
import ssl
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, TextIO

import httpx

from . import __version__
from ._auth import TokenAuth
from ._client_auth import ClientAuth, ClientSecretBasic, ClientSecretPost
from ._errors import ConfigurationError, TokenError
from ._jwt import ClientSecretJWT, JWTBearerGrant, PrivateKeyJWT
from ._providers import ClientCredentials
from ._retry import RetryPolicy
from ._token import Token
from ._transport import root_cause

__all__ = ["build_provider", "main", "parser", "unverified_jwt"]

PROG = "httpx-tokenauth"
ENV_PREFIX = "HTTPX_TOKENAUTH_"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

GRANTS = ("client_credentials", "jwt_bearer")
AUTH_METHODS = ("basic", "post", "client_secret_jwt", "private_key_jwt")
SECRET_METHODS = frozenset({"basic", "post", "client_secret_jwt"})
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
#: Headers whose values are never printed in full.
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


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

The status line and headers the API sent go to stdout, then the body. With -v,
every request sent (the 401 replay included) goes to stderr, with the token
shortened. Token options are those of '{PROG} token'.

exit status: 0 a response arrived (with --fail: and its status is below 400),
1 failure, 2 wrong command line or configuration.
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
        "--grant",
        choices=GRANTS,
        help="client_credentials (the default) or jwt_bearer (RFC 7523: a signed "
        f"assertion, see --issuer) {_env_help('GRANT')}",
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
        help="client_credentials: an 'audience' form parameter (Auth0), may repeat; "
        f"jwt_bearer: the assertion's aud (default: the token URL) {_env_help('AUDIENCE')}",
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
        "private_key_jwt; default: basic with a secret, private_key_jwt with only a key "
        f"{_env_help('AUTH')}",
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
    g.add_argument("--issuer", metavar="ISS", help=f"the assertion's iss {_env_help('ISSUER')}")
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
    r.add_argument("-v", "--verbose", action="store_true", help="show what is sent, on stderr")
    r.add_argument("--fail", action="store_true", help="exit 1 when the status is 400 or above")
    _add_provider_options(request)

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
    with _clients(args) as (token_client, _):
        auth = TokenAuth(provider, token_client=token_client, retry=_retry(args))
        token = auth.get_token()
    if not args.json:
        stdout.write(token.access_token + "\n")
        return EXIT_OK
    stdout.write(json.dumps(token_info(token, show_token=args.show_token), indent=2) + "\n")
    return EXIT_OK


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
    if not args.url.lower().startswith(("https://", "http://")):
        raise UsageError(
            f"the URL must start with https:// (or http:// to loopback), got {args.url[:60]!r}"
        )
    provider = build_provider(args)
    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    if args.verbose:
        hooks["request"].append(lambda request: _show_request(request, stderr))
        hooks["response"].append(lambda response: _show_status(response, stderr, "< "))
    with _clients(args) as (token_client, verify):
        auth = TokenAuth(provider, token_client=token_client, retry=_retry(args))
        with httpx.Client(
            auth=auth, verify=verify, timeout=args.timeout, event_hooks=hooks
        ) as client:
            try:
                response = client.request(
                    args.method.upper(), args.url, headers=headers, content=content
                )
            except httpx.InvalidURL as exc:
                raise UsageError(f"invalid URL {args.url!r}: {exc}") from None
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
    scheme, _, credentials = value.partition(" ")
    if name.lower() != "cookie" and credentials:
        return f"{scheme} {credentials[:8]}... (shortened)"
    return "[redacted]"


def _short_url(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


# -- building the provider from flags and environment -----------------------------------


def _env(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name) or None


def _opt(args: argparse.Namespace, attr: str, env: str) -> str | None:
    value: str | None = getattr(args, attr, None)
    return value if value is not None else _env(env)


def _multi(values: Sequence[str], env: str) -> list[str]:
    """A repeatable option: the flags, or else the environment variable; split on spaces."""
    raw = list(values) or ([] if (text := _env(env)) is None else [text])
    return [item for value in raw for item in value.split()]


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} wants NAME=VALUE, got {name[:40]!r} without '='")
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


@dataclass(frozen=True)
class _Key:
    """A signing key as the library takes it, without showing it."""

    data: bytes | str
    password: str | None
    algorithm: str
    key_id: str | None
    certificate: bytes | None

    def __repr__(self) -> str:
        return f"<key {self.algorithm}>"


def build_provider(args: argparse.Namespace) -> ClientCredentials | JWTBearerGrant:
    """The provider that the token options (flags, then environment variables) describe.

    Raises UsageError for options that do not fit together, CommandError for a
    file that cannot be read, ConfigurationError for what the library refuses.
    """
    account = _service_account(args)
    token_url = _opt(args, "token_url", "TOKEN_URL") or (account or {}).get("token_uri")
    if not token_url:
        raise UsageError(f"no token endpoint: pass --token-url URL or set {ENV_PREFIX}TOKEN_URL")
    grant = _opt(args, "grant", "GRANT") or ("jwt_bearer" if account else "client_credentials")
    if grant not in GRANTS:
        raise UsageError(f"{ENV_PREFIX}GRANT must be one of {', '.join(GRANTS)}, got {grant!r}")
    method = _opt(args, "auth", "AUTH")
    if method is not None and method not in AUTH_METHODS:
        raise UsageError(
            f"{ENV_PREFIX}AUTH must be one of {', '.join(AUTH_METHODS)}, got {method!r}"
        )
    client_id = _opt(args, "client_id", "CLIENT_ID")
    key = _signing_key(args, account)
    explicit_secret = args.client_secret_env is not None or args.client_secret_file is not None
    scope = _multi(args.scope, "SCOPE") or None
    audience = _multi(args.audience, "AUDIENCE")
    resource = _multi(args.resource, "RESOURCE") or None
    extra_params = _pairs(args.param, "--param") or None
    extra_claims = _pairs(args.claim, "--claim")

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
    secret = _client_secret(args) if method in SECRET_METHODS else None
    client_auth = _client_auth(method, key, args)

    if grant == "client_credentials":
        if method is None:
            raise UsageError(
                "the client credentials grant needs client authentication: a client secret "
                f"({ENV_PREFIX}CLIENT_SECRET, --client-secret-env or --client-secret-file) or "
                "a private key (--key-file, for private_key_jwt)"
            )
        if not client_id:
            raise UsageError(f"no client id: pass --client-id ID or set {ENV_PREFIX}CLIENT_ID")
        if extra_claims:
            raise UsageError("--claim is for the jwt_bearer grant's assertion")
        return ClientCredentials(
            token_url,
            client_id=client_id,
            client_secret=secret,
            client_auth=client_auth,
            scope=scope,
            audience=audience or None,
            resource=resource,
            extra_params=extra_params,
        )

    if key is None:
        raise UsageError("the jwt_bearer grant signs an assertion: pass --key-file PATH")
    issuer = _opt(args, "issuer", "ISSUER") or (account or {}).get("client_email")
    subject = _opt(args, "subject", "SUBJECT") or (account or {}).get("client_email")
    if not issuer or not subject:
        raise UsageError(
            "the jwt_bearer grant needs the assertion's --issuer and --subject "
            f"(or {ENV_PREFIX}ISSUER and {ENV_PREFIX}SUBJECT)"
        )
    if len(audience) > 1:
        raise UsageError("the jwt_bearer grant's assertion takes one --audience")
    if method is not None and not client_id:
        raise UsageError(f"--auth {method} needs --client-id (or {ENV_PREFIX}CLIENT_ID)")
    return JWTBearerGrant(
        token_url,
        issuer=issuer,
        subject=subject,
        key=key.data,
        algorithm=key.algorithm,
        password=key.password,
        key_id=key.key_id,
        certificate=key.certificate,
        audience=audience[0] if audience else None,
        extra_claims=extra_claims or None,
        scope=scope,
        resource=resource,
        extra_params=extra_params,
        client_id=client_id,
        client_secret=secret,
        client_auth=client_auth,
    )


def _client_auth(
    method: str | None, key: _Key | None, args: argparse.Namespace
) -> ClientAuth | None:
    audience = args.assertion_audience
    if audience is not None and method not in ("client_secret_jwt", "private_key_jwt"):
        raise UsageError(
            "--assertion-audience goes with --auth client_secret_jwt or private_key_jwt"
        )
    if method == "basic":
        return ClientSecretBasic()
    if method == "post":
        return ClientSecretPost()
    if method == "client_secret_jwt":
        algorithm = _opt(args, "algorithm", "ALGORITHM") or "HS256"
        return ClientSecretJWT(
            algorithm=algorithm, key_id=_opt(args, "key_id", "KEY_ID"), audience=audience
        )
    if method == "private_key_jwt":
        if key is None:
            raise UsageError("private_key_jwt needs the client's private key: pass --key-file PATH")
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


def _client_secret(args: argparse.Namespace) -> str:
    """The client secret, from the one place it was pointed at. Never from argv."""
    if args.client_secret_env is not None and args.client_secret_file is not None:
        raise UsageError("pass --client-secret-env or --client-secret-file, not both")
    if args.client_secret_env is not None:
        return _secret_from_env(args.client_secret_env)
    path = args.client_secret_file
    if path is None and _env("CLIENT_SECRET") is None:
        path = _env("CLIENT_SECRET_FILE")
    if path is not None:
        data = _read_file(path, "client secret file")
        try:
            secret = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise CommandError(f"client secret file {path!r} is not UTF-8 text") from None
        if not secret:
            raise CommandError(f"client secret file {path!r} is empty")
        return secret
    if _env("CLIENT_SECRET_FILE") is not None:
        raise UsageError(
            f"both {ENV_PREFIX}CLIENT_SECRET and {ENV_PREFIX}CLIENT_SECRET_FILE are set: unset one"
        )
    value = _env("CLIENT_SECRET")
    if value is None:
        raise UsageError(
            "this client authentication needs the client secret: set "
            f"{ENV_PREFIX}CLIENT_SECRET, or pass --client-secret-env NAME or "
            "--client-secret-file PATH"
        )
    return value


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


def _signing_key(args: argparse.Namespace, account: Mapping[str, str] | None) -> _Key | None:
    path = _opt(args, "key_file", "KEY_FILE")
    if path is not None:
        raw = _read_file(path, "key file")
        data: bytes | str = raw.decode("utf-8") if raw.lstrip().startswith(b"{") else raw
        key_id = None
    elif account is not None:
        data, key_id = account["private_key"], account.get("private_key_id")
    else:
        return None
    password_env = args.key_password_env
    password = _secret_from_env(password_env) if password_env else _env("KEY_PASSWORD")
    cert_path = _opt(args, "certificate_file", "CERTIFICATE_FILE")
    certificate = None if cert_path is None else _read_file(cert_path, "certificate file")
    algorithm = _opt(args, "algorithm", "ALGORITHM") or (
        "RS256" if account is not None and path is None else _guess_algorithm(data, password)
    )
    return _Key(
        data=data,
        password=password,
        algorithm=algorithm,
        key_id=_opt(args, "key_id", "KEY_ID") or key_id,
        certificate=certificate,
    )


_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _guess_algorithm(data: bytes | str, password: str | None) -> str:
    """The usual algorithm for a key: RS256 for RSA, ES256/384/512 by curve, EdDSA.

    When the key cannot be read here, RS256: the library then reads the key
    itself and says precisely what is wrong with it.
    """
    if isinstance(data, str):  # a JWK
        try:
            jwk = json.loads(data)
        except ValueError:
            return "RS256"
        if not isinstance(jwk, dict):
            return "RS256"
        if isinstance(jwk.get("alg"), str):
            return str(jwk["alg"])
        if jwk.get("kty") == "EC":
            return _EC_ALGORITHMS.get(str(jwk.get("crv")), "ES256")
        if jwk.get("kty") == "OKP":
            return "EdDSA"
        return "RS256"
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: PLC0415

    secret = None if password is None else password.encode()
    key: Any = None
    for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
        try:
            key = load(data, secret)
            break
        except (ValueError, TypeError):
            continue
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(
            key.curve.name, "ES256"
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "RS256"


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
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout}")
    context = _ssl_context(args)
    with httpx.Client(verify=context, timeout=args.timeout, follow_redirects=False) as client:
        yield client, context
