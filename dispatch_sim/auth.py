"""API-key (and optional HMAC signature) checks on incoming calls."""

from base64 import urlsafe_b64encode
import hmac

import grpc


def _metadata(context: grpc.aio.ServicerContext[object, object]) -> dict[str, str]:
    """Read the invocation metadata as text.

    Args:
        context: The call context.

    Returns:
        Metadata key -> value (the first value of a repeated key wins).

    """
    result: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        result.setdefault(key, text)
    return result


def _signature(secret: str, key: str, ts: str, nonce: str, method: str) -> str:
    """Compute the signature the frequenz client's signing interceptor sends.

    Args:
        secret: The shared signing secret.
        key: The API key.
        ts: The `ts` metadata value.
        nonce: The `nonce` metadata value.
        method: The RPC method name (last path segment).

    Returns:
        The unpadded url-safe base64 HMAC-SHA256.

    """
    mac = hmac.new(secret.encode(), digestmod="sha256")
    for part in (key, ts, nonce, method):
        mac.update(part.encode())
    return urlsafe_b64encode(mac.digest()).strip(b"=").decode()


def check_call(
    context: grpc.aio.ServicerContext[object, object],
    method: str,
    *,
    api_key: str,
    sign_secret: str | None,
) -> str | None:
    """Check a call's credentials.

    Args:
        context: The call context.
        method: The RPC method name.
        api_key: The expected value of the `key` metadata.
        sign_secret: When set, `ts`, `nonce` and `sig` metadata must carry a
            valid signature; otherwise any signature metadata is ignored.

    Returns:
        None if the call is allowed, else the reason (never containing the key).

    """
    metadata = _metadata(context)
    key = metadata.get("key")
    if key is None:
        return "missing API key"
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        return "invalid API key"
    if sign_secret is None:
        return None
    ts, nonce, sig = (metadata.get(name) for name in ("ts", "nonce", "sig"))
    if ts is None or nonce is None or sig is None:
        return "missing request signature"
    expected = _signature(sign_secret, key, ts, nonce, method)
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return "invalid request signature"
    return None
