"""The operator's Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram

INTERACTIONS = Counter(
    "tether_interactions_total", "Interactions that reached a final status.", ["kind", "status"]
)
DURATION = Histogram(
    "tether_interaction_duration_seconds",
    "From the operator taking an interaction to its final status.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
PICKUP = Histogram(
    "tether_interaction_pickup_seconds",
    "From the gateway accepting a create to the operator starting its run (the watch path).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
FIRST_OUTPUT = Histogram(
    "tether_model_first_output_seconds",
    "From the operator taking a model interaction to the provider's first output.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge("tether_interactions_in_flight", "Interactions running now.", ["kind"])
SANDBOX_START = Histogram(
    "tether_sandbox_start_seconds",
    "From the gateway accepting an agent run to its sandbox pod running.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
ACTIVE_SANDBOXES = Gauge("tether_sandboxes_active", "Sandbox pods that have not ended.")
