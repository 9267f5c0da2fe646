"""In-memory Frequenz Dispatch API server ("simulator") for tests and demos.

Run it with `python -m dispatch_sim --api-key KEY [--seed FILE.json]`, or use
`DispatchSimulator` from Python. Modules: `server` (the simulator and its
controls), `service` (the gRPC side), `store` (data, indexes, listing), `rules`
(validation, update masks, end times), `convert` (Python values <-> protobuf),
`seed` (seed files, generated dispatches) and `__main__` (the command line).
"""

from .errors import DispatchNotFoundError, InvalidDispatchError
from .server import DispatchSimulator

__all__ = ["DispatchNotFoundError", "DispatchSimulator", "InvalidDispatchError"]
