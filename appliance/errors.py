"""One error hierarchy for every failure a user can cause.

Each class carries a stable exit code; the CLI prints the message as one
sentence on stderr and exits with that code. The codes are part of the
product's interface (README, "Exit codes"): never renumber one.
"""

from __future__ import annotations

from typing import ClassVar


class ApplianceError(Exception):
    """A failure with a clear, user-facing message. Never a bug."""

    exit_code: ClassVar[int] = 1
    summary: ClassVar[str] = "internal error"

    def __init__(self, message: str, *, code: str | None = None, **params: object) -> None:
        super().__init__(message)
        self.message = message
        # A stable message id and its parameters, so that a client in another
        # language can say the same in its own words (docs/formats/protocol.md).
        self.code = code or type(self).__name__.removesuffix("Error").lower()
        self.params = params

    def __str__(self) -> str:
        return self.message


class UsageError(ApplianceError):
    exit_code = 2
    summary = "invalid command-line usage"


class InputError(ApplianceError):
    """A file the user named is missing, unreadable or not a regular file."""

    exit_code = 3
    summary = "input file missing or unreadable"


class ModelFormatError(ApplianceError):
    """A model file is not a valid GGUF (empty, truncated, corrupt, absurd)."""

    exit_code = 4
    summary = "model file is not a valid GGUF"


class EngineError(ApplianceError):
    """The inference engine could not load or run a (valid) model."""

    exit_code = 5
    summary = "inference engine failed"


class IntegrityError(ApplianceError):
    """A file's bytes are not the ones it must have: digest, MAC or tag mismatch."""

    exit_code = 6
    summary = "integrity check failed"


class ConfigError(ApplianceError):
    """The appliance's home, catalog or settings are unusable."""

    exit_code = 7
    summary = "configuration error"


class ContextOverflowError(ApplianceError):
    """The prompt alone does not fit the model's context window."""

    exit_code = 8
    summary = "prompt too long for the context window"


class CredentialError(ApplianceError):
    """No identity or passphrase given opens the file (wrong key or passphrase)."""

    exit_code = 9
    summary = "wrong identity or passphrase"


class HostSecurityError(ApplianceError):
    """The host lacks a protection the appliance will not run without."""

    exit_code = 10
    summary = "host cannot provide a required protection"


class AuditError(ApplianceError):
    """The audit log cannot record an event, so the action that needed it fails."""

    exit_code = 11
    summary = "audit log unavailable (fail closed)"


class PolicyError(ApplianceError):
    """A policy file is invalid: unknown key, wrong type or bad value."""

    exit_code = 12
    summary = "invalid policy"


class BlockedError(ApplianceError):
    """The policy refused the request: DLP block, clearance, or no air gap."""

    exit_code = 13
    summary = "refused by policy"


class AuthenticationError(ApplianceError):
    """Unknown user, wrong password, locked account or expired session."""

    exit_code = 14
    summary = "authentication failed"


class PermissionDeniedError(ApplianceError):
    """The signed-in user's role may not do this (separation of duties)."""

    exit_code = 15
    summary = "not permitted for this role"


class BundleError(ApplianceError):
    """A bundle was refused: unsigned, altered, stale, rolled back, unsafe or mismatched."""

    exit_code = 16
    summary = "bundle refused"


class CheckFailedError(ApplianceError):
    """`appliance doctor` found a check that failed."""

    exit_code = 17
    summary = "a health check failed"


class BusyError(ApplianceError):
    """The service has no room for the request now: too many sessions or queued answers."""

    exit_code = 18
    summary = "the appliance is busy"


class ServiceError(ApplianceError):
    """The appliance service cannot be reached, or broke the protocol."""

    exit_code = 19
    summary = "the appliance service is unavailable"


class DocumentError(ApplianceError):
    """A document cannot be taken in: unsupported, protected, malformed or over the limits."""

    exit_code = 20
    summary = "the document cannot be read"


class IncompleteLogError(ApplianceError):
    """The audit log verifies, but it was restored from a backup: it is never complete."""

    exit_code = 21
    summary = "the audit log was restored from a backup and is not complete"


EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

ERROR_CLASSES: tuple[type[ApplianceError], ...] = (
    ApplianceError,
    UsageError,
    InputError,
    ModelFormatError,
    EngineError,
    IntegrityError,
    ConfigError,
    ContextOverflowError,
    CredentialError,
    HostSecurityError,
    AuditError,
    PolicyError,
    BlockedError,
    AuthenticationError,
    PermissionDeniedError,
    BundleError,
    CheckFailedError,
    BusyError,
    ServiceError,
    DocumentError,
    IncompleteLogError,
)
