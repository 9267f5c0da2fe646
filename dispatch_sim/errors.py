"""The simulator's errors: one type per meaning, each mapped to one gRPC status."""


class InvalidDispatchError(ValueError):
    """Input the service refuses (INVALID_ARGUMENT): bad data, mask or page token."""


class DispatchNotFoundError(LookupError):
    """A dispatch id unknown in the microgrid (NOT_FOUND)."""
