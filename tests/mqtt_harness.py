"""The tests' real mosquitto broker: ops/servers.py's MosquittoServer (the stacks' own configuration)."""
from ops.servers import MosquittoServer  # noqa: F401  (the tests' import)
