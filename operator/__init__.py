"""The kopf operator that reconciles Interaction resources (tether.operator)."""
