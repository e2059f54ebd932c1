"""The agent loop and workspace tools that run inside sandbox pods (tether.sandbox)."""
