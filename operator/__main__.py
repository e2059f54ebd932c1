"""`python -m tether.operator`: run the operator (one active instance)."""

import kopf
import uvloop

from . import handlers  # noqa: F401  (registers the handlers)

if __name__ == "__main__":
    uvloop.run(kopf.operator(standalone=True, clusterwide=True))
