"""What Tether keeps in Redis: each interaction's event log, what a run produced, large outputs.

The cluster holds the interactions themselves; `erase` removes one from both.
"""
