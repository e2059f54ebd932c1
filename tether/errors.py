"""Why a run cannot go on, in words a user can act on: `code` and `message` go into errors[].

One family: a provider's refusal (`ProviderError`, in tether.providers), an agent that cannot be
combined with the request (`AgentConfigError`, in tether.agents), and the rest (an unknown model
or agent, a broken chain) raised as `RunError` itself.
"""

from __future__ import annotations


class RunError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_error(self) -> dict[str, str]:
        """The entry of the interaction's errors[]."""
        return {"code": self.code, "message": self.message}
