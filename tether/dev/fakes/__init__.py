"""Local stand-ins for external model vendors, speaking their real wire protocols."""
