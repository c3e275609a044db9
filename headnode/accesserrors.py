"""Errors of accounts, folders and access, with the HTTP status each renders as."""
from __future__ import annotations

from pipeline import errors


class Refused(errors.PipelineError):
    """The request is understood but not allowed as asked (rendered 400 with its reason)."""
    code = "refused"


class Forbidden(errors.PipelineError):
    """The caller's role or grants do not cover this action (403)."""
    code = "forbidden"


class SignInFailed(errors.PipelineError):
    code = "sign_in_failed"


class Locked(errors.PipelineError):
    """Too many failed sign-ins: try again later (429)."""
    code = "locked"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class PasswordChangeRequired(errors.PipelineError):
    code = "password_change_required"
