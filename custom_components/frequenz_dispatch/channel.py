"""The gRPC channel behind `DispatchApi`: server URL, its options, TLS files, limits.

The URL has the form the Frequenz clients use, ``grpc://host[:port][?options]``
(options: ssl, ssl_root_certificates_path, ssl_private_key_path,
ssl_certificate_chain_path, keep_alive, keep_alive_interval_s,
keep_alive_timeout_s). We parse and check it ourselves so that every bad value
is a clear `InvalidServerUrl` before anything connects, certificate files can
be read off the event loop, and the channel gets our receive limit (which the
client library offers no way to set).
"""

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from frequenz.client.base.authentication import (
    AuthenticationInterceptorUnaryStream,
    AuthenticationInterceptorUnaryUnary,
)
from frequenz.client.base.signing import (
    SigningInterceptorUnaryStream,
    SigningInterceptorUnaryUnary,
)
import grpc

MAX_RECEIVE_BYTES = 16 * 1024 * 1024
"""Largest message we accept (gRPC's default is 4 MiB)."""

DEFAULT_PORT = 443
_KEEP_ALIVE_INTERVAL_S = 60.0
_KEEP_ALIVE_TIMEOUT_S = 20.0
_MAX_SECONDS = 2_147_483
"""gRPC takes milliseconds as a C int: longer values overflow."""

_TRUE = ("true", "on", "1")
_FALSE = ("false", "off", "0")
_CERT_OPTIONS = (
    "ssl_root_certificates_path",
    "ssl_private_key_path",
    "ssl_certificate_chain_path",
)
_KEEP_ALIVE_OPTIONS = ("keep_alive_interval_s", "keep_alive_timeout_s")
_OPTIONS = ("ssl", "keep_alive", *_CERT_OPTIONS, *_KEEP_ALIVE_OPTIONS)


class InvalidServerUrl(ValueError):
    """The server URL cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Certificates:
    """The contents of the TLS files a URL names (None where none is named)."""

    root: bytes | None = None
    private_key: bytes | None = None
    chain: bytes | None = None


@dataclass(frozen=True, slots=True)
class ServerUrl:
    """A checked server URL."""

    target: str
    """host:port for gRPC."""
    ssl: bool
    certificate_files: tuple[Path | None, Path | None, Path | None]
    """Root certificates, private key, certificate chain."""
    keep_alive_ms: tuple[int, int] | None
    """Keep-alive interval and timeout in milliseconds, None when disabled."""

    @property
    def names_files(self) -> bool:
        """Whether certificate files must be read to connect."""
        return any(path is not None for path in self.certificate_files)


def _bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidServerUrl(f"{name} must be true or false, not {value!r}")


def _millis(name: str, value: str | None, default: float) -> int:
    if value is None:
        return round(default * 1000)
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidServerUrl(f"{name} must be a number, not {value!r}") from None
    if not (math.isfinite(seconds) and 0.001 <= seconds <= _MAX_SECONDS):
        raise InvalidServerUrl(f"{name} must lie within 0.001..{_MAX_SECONDS}")
    return round(seconds * 1000)


def _options(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as err:
        raise InvalidServerUrl(f"malformed options: {err}") from None
    options = dict(pairs)  # the last of a repeated option wins, as in the clients
    if not all(value.isprintable() for value in options.values()):
        raise InvalidServerUrl("option values must not contain control characters")
    if unknown := sorted(set(options) - set(_OPTIONS)):
        raise InvalidServerUrl(f"unknown option(s): {', '.join(unknown)}")
    return options


def parse_server_url(url: str) -> ServerUrl:
    """Check a server URL; raise InvalidServerUrl saying what is wrong."""
    if not url.isprintable() or any(char.isspace() for char in url):
        raise InvalidServerUrl("the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise InvalidServerUrl(str(err)) from None
    if parts.scheme != "grpc":
        raise InvalidServerUrl("the URL must start with grpc://")
    if not parts.hostname:
        raise InvalidServerUrl("the URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise InvalidServerUrl("the URL must not contain a user or password")
    if parts.path not in ("", "/") or parts.fragment:
        raise InvalidServerUrl("the URL must not have a path or fragment")
    if port == 0:
        raise InvalidServerUrl("the port must lie within 1..65535")
    options = _options(parts.query)
    ssl = _bool("ssl", options["ssl"]) if "ssl" in options else True
    files = tuple(
        Path(options[name]) if options.get(name) else None for name in _CERT_OPTIONS
    )
    if not ssl and any(name in options for name in _CERT_OPTIONS):
        raise InvalidServerUrl("certificate files need ssl=true")
    if (files[1] is None) != (files[2] is None):
        raise InvalidServerUrl(
            "ssl_private_key_path and ssl_certificate_chain_path go together"
        )
    keep_alive = _bool("keep_alive", options.get("keep_alive", "true"))
    if not keep_alive and any(name in options for name in _KEEP_ALIVE_OPTIONS):
        raise InvalidServerUrl("keep-alive times need keep_alive=true")
    host = parts.hostname
    host = f"[{host}]" if ":" in host else host
    return ServerUrl(
        target=f"{host}:{port or DEFAULT_PORT}",
        ssl=ssl,
        certificate_files=(files[0], files[1], files[2]),
        keep_alive_ms=(
            _millis(
                "keep_alive_interval_s",
                options.get("keep_alive_interval_s"),
                _KEEP_ALIVE_INTERVAL_S,
            ),
            _millis(
                "keep_alive_timeout_s",
                options.get("keep_alive_timeout_s"),
                _KEEP_ALIVE_TIMEOUT_S,
            ),
        )
        if keep_alive
        else None,
    )


def read_certificates(url: ServerUrl) -> Certificates:
    """Read the files the URL names (blocking: run it in an executor)."""
    contents: list[bytes | None] = []
    for name, path in zip(_CERT_OPTIONS, url.certificate_files, strict=True):
        if path is None:
            contents.append(None)
            continue
        try:
            contents.append(path.read_bytes())
        except (OSError, ValueError) as err:
            raise InvalidServerUrl(
                f"cannot read {name} {path}: {getattr(err, 'strerror', None) or err}"
            ) from None
    return Certificates(contents[0], contents[1], contents[2])


MAX_KEY_LENGTH = 4096
"""Longest API key sent (characters).

gRPC refuses a request whose metadata exceeds 8 KiB now and then, and every
one above 16 KiB (RESOURCE_EXHAUSTED, "received metadata size exceeds soft
limit"); measured against the simulator, the other headers take about 610
bytes and the first refusals come at 8,000 characters. 4,096 leaves room for
the signing headers.
"""


def sendable(text: str) -> bool:
    """Whether gRPC can send `text` as metadata (printable ASCII, not too long)."""
    return len(text) <= MAX_KEY_LENGTH and all(" " <= char <= "~" for char in text)


def open_channel(
    url: ServerUrl,
    certificates: Certificates,
    api_key: str,
    sign_secret: str | None,
) -> grpc.aio.Channel:
    """Open the channel (lazily connecting) with the key and signing interceptors."""
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ]
    if url.keep_alive_ms is not None:
        options += [
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.keepalive_time_ms", url.keep_alive_ms[0]),
            ("grpc.keepalive_timeout_ms", url.keep_alive_ms[1]),
        ]
    interceptors: list[Any] = [
        AuthenticationInterceptorUnaryUnary(api_key),
        AuthenticationInterceptorUnaryStream(api_key),
    ]
    if sign_secret:
        interceptors += [
            SigningInterceptorUnaryUnary(sign_secret),
            SigningInterceptorUnaryStream(sign_secret),
        ]
    if not url.ssl:
        return grpc.aio.insecure_channel(url.target, options, interceptors=interceptors)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certificates.root,
        private_key=certificates.private_key,
        certificate_chain=certificates.chain,
    )
    return grpc.aio.secure_channel(
        url.target, credentials, options, interceptors=interceptors
    )
