"""`python -m tether.operator`: run the operator (one active instance)."""

import kopf

from . import handlers  # noqa: F401  (registers the handlers)

if __name__ == "__main__":
    kopf.run(standalone=True, clusterwide=True)
