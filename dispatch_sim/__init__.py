"""In-memory Frequenz Dispatch API server ("simulator") for tests and demos.

Run it with `python -m dispatch_sim --api-key KEY [--seed FILE.json]`, or use
`DispatchSimulator` from Python.
"""

from .server import DispatchSimulator
from .store import DispatchNotFoundError
from .validate import InvalidDispatchError

__all__ = ["DispatchNotFoundError", "DispatchSimulator", "InvalidDispatchError"]
