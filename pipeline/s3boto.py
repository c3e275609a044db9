"""boto3 for the S3 requests the lean path does not make, loaded only when one is made.

Importing boto3 and building a client costs about 0.4 s of CPU, which a short
job pays in every process (head node and each worker) while client and store
share the machine's cores; ``s3store`` imports this module on first use, so a
job served by the lean path (``s3http``) never loads boto3. botocore's errors
are translated here, once, into pipeline errors that say what to do next.
"""
from __future__ import annotations

import logging
import threading

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline import errors
from pipeline.credentials import Credentials

_transport_errors = (botocore.exceptions.EndpointConnectionError,
                     botocore.exceptions.ConnectionClosedError,
                     botocore.exceptions.ReadTimeoutError,
                     botocore.exceptions.ConnectTimeoutError,
                     botocore.exceptions.ResponseStreamingError,
                     botocore.exceptions.IncompleteReadError)

# botocore's DEBUG records print signed requests, session tokens included: never below INFO
for _name in ("botocore", "boto3", "s3transfer"):
    logging.getLogger(_name).setLevel(logging.INFO)

_session_lock = threading.Lock()
_session = None


def translate(exc: Exception, *, what: str, classify) -> errors.PipelineError | None:
    """The pipeline error for a botocore failure while doing ``what`` (None if foreign);
    ``classify`` maps an S3 error response to one, as for the lean path."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(err.get("Code") or status)
        return classify(what=what, status=status, code=code, message=err.get("Message") or code)
    if isinstance(exc, _transport_errors):
        return errors.TransientStoreError(f"{what}: {exc}", store_code=type(exc).__name__)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.AccessDenied(f"{what}: no credentials found (set an access key or a role)")
    return None


def shared_session() -> boto3.session.Session:
    """One boto3 session per process: clients made from it share its loaded models,
    which makes a new client cheap; each client still gets its own credentials."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def chain_credentials() -> Credentials:
    """The credentials of boto3's default chain (environment, profile, instance role…)."""
    found = shared_session().get_credentials()
    if found is None:
        raise errors.AccessDenied("no credentials found (set an access key or a role)")
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def new_client(*, endpoint_url: str | None, region: str, credentials: Credentials | None, pool_size: int):
    """An S3 client with botocore's retries off (``call_with_retries`` retries and counts them)."""
    config = Config(retries={"max_attempts": 1, "mode": "standard"},
                    max_pool_connections=pool_size, connect_timeout=10, read_timeout=120,
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    return shared_session().client(
        service_name="s3", endpoint_url=endpoint_url, config=config, region_name=region,
        aws_access_key_id=credentials.access_key_id if credentials else None,
        aws_secret_access_key=credentials.secret_access_key if credentials else None,
        aws_session_token=credentials.session_token if credentials else None)
