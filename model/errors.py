"""One exception hierarchy for the whole project.

Every error a user can cause derives from :class:`AdvisorError`; the CLI prints its message
on one line and exits 1, and the HTTP layer maps each subclass to a status code in one place
(``service.api.errors``).
"""

from __future__ import annotations

__all__ = [
    "AdvisorError",
    "ArtifactError",
    "InputFileError",
    "InputValidationError",
    "ModelNotFoundError",
    "ModelRootError",
    "PolicyConfigError",
    "SchemaError",
    "SignatureError",
]


class AdvisorError(Exception):
    """Base class of every error the advisor reports to a user."""


class InputFileError(AdvisorError):
    """An input file is missing, unreadable or of an unsupported format."""


class SchemaError(AdvisorError):
    """A whole input cannot be used: a required column is missing."""


class InputValidationError(AdvisorError):
    """Rows failed validation; ``rejects`` lists every one (line, order_id, column, reason)."""

    def __init__(self, message: str, rejects: object | None = None) -> None:
        super().__init__(message)
        self.rejects = rejects


class ModelNotFoundError(AdvisorError):
    """No model artifact in the given directory."""


class ArtifactError(AdvisorError):
    """A model artifact is tampered with, incomplete or incompatible with this install."""


class SignatureError(ArtifactError):
    """A signing key is configured and the artifact is unsigned or its signature does not
    verify: nothing of it was unpickled."""


class ModelRootError(AdvisorError):
    """A model directory was named that resolves outside the model root (nothing read)."""


class PolicyConfigError(AdvisorError):
    """The policy TOML file is missing, malformed or holds invalid values."""
