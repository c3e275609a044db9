"""Errors of the pipeline, classified by what the caller does next.

``RetryableError``: requeue the task (throttling, timeouts, a lost lease).
``PermanentError``: do not retry; report to the user (bad credentials, missing
bucket, malformed message, corrupt data).
"""
from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises."""

    code = "pipeline_error"


class RetryableError(PipelineError):
    code = "retryable"


class PermanentError(PipelineError):
    code = "permanent"


class MalformedMessage(PermanentError):
    code = "malformed_message"

    def __init__(self, reason: str, errors: dict | None = None):
        super().__init__(reason)
        self.errors = errors or {}


class StoreError(PermanentError):
    """A store refused a request for a reason retrying will not fix."""

    code = "store_error"


class AccessDenied(StoreError):
    code = "access_denied"


class NoSuchBucket(StoreError):
    code = "no_such_bucket"


class NoSuchKey(StoreError):
    code = "no_such_key"


class VerificationFailed(RetryableError):
    """What landed differs from the source; copying again may fix it."""

    code = "verification_failed"


class SourceChanged(PermanentError):
    """The source object changed after the job was planned."""

    code = "source_changed"


class TransientStoreError(RetryableError):
    code = "transient_store_error"

    def __init__(self, message: str, *, store_code: str | None = None):
        super().__init__(message)
        self.store_code = store_code or self.code   # what the store said (SlowDown, 503, …), for the job log


class BadLocation(PermanentError):
    """A source or destination the user gave cannot be used as written."""

    code = "bad_location"
