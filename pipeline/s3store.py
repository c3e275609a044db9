"""An S3 bucket on AWS or any S3-compatible endpoint, through boto3.

botocore's own retries are off: every request goes through
``call_with_retries`` so throttling (503 SlowDown) and transient failures are
retried with backoff *and counted* for the job's log. botocore errors are
translated here, once, into pipeline errors that say what to do next.
"""
from __future__ import annotations

import base64
import threading
from email.utils import format_datetime
from typing import Iterator
from urllib.parse import urlencode

import boto3
import botocore.exceptions
from botocore.config import Config

from pipeline import errors
from pipeline.credentials import Credentials
from pipeline.retrying import RetryPolicy, call_with_retries
from pipeline.s3http import Response, S3Http, object_path
from pipeline.store import Download, ObjectAttributes, ObjectInfo, StoreSpec

RETRYABLE_CODES = {"SlowDown", "503", "500", "502", "504", "InternalError", "RequestTimeout",
                   "ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                   "OperationAborted", "RequestTimeTooSkewed", "BadDigest", "IncompleteBody",
                   "XAmzContentSHA256Mismatch"}
DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "403",
                "InvalidClientTokenId", "UnrecognizedClientException"}
COPIED_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
                  "Expires", "WebsiteRedirectLocation")
_transport_errors = (botocore.exceptions.EndpointConnectionError,
                     botocore.exceptions.ConnectionClosedError,
                     botocore.exceptions.ReadTimeoutError,
                     botocore.exceptions.ConnectTimeoutError,
                     botocore.exceptions.ResponseStreamingError,
                     botocore.exceptions.IncompleteReadError)


def classify(*, what: str, status: int | None, code: str, message: str) -> errors.PipelineError:
    """The pipeline error for an S3 error response, by code and then by HTTP status."""
    detail = f"{what}: {code}: {message}"
    if code in RETRYABLE_CODES or (status is not None and (status >= 500 or status == 429)):
        return errors.TransientStoreError(detail, store_code=code)
    if code in DENIED_CODES:
        return errors.AccessDenied(f"{what}: access denied ({code}): {message}. "
                                   "Check the access key, secret and permissions.")
    if code == "NoSuchBucket":
        return errors.NoSuchBucket(f"{what}: the bucket does not exist")
    if code in ("NoSuchKey", "404", "NotFound"):
        return errors.NoSuchKey(f"{what}: no such object")
    if code in ("PreconditionFailed", "412"):
        return errors.SourceChanged(f"{what}: the source object changed after the job was planned")
    if code == "InvalidDigest":
        return errors.VerificationFailed(detail)
    return errors.StoreError(detail)


def translate(exc: Exception, what: str) -> errors.PipelineError | None:
    """The pipeline error for a botocore failure while doing ``what`` (None if foreign)."""
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


def _md5_header(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


_HEADER_NAMES = {"CacheControl": "Cache-Control", "ContentDisposition": "Content-Disposition",
                 "ContentEncoding": "Content-Encoding", "ContentLanguage": "Content-Language",
                 "Expires": "Expires", "WebsiteRedirectLocation": "x-amz-website-redirect-location"}


def _attribute_headers(attrs: ObjectAttributes) -> dict | None:
    """HTTP headers carrying ``attrs``; None when a value cannot travel as a plain header."""
    headers = {}
    for name, value in attrs.headers.items():
        headers[_HEADER_NAMES[name]] = format_datetime(value, usegmt=True) if name == "Expires" else value
    if attrs.content_type:
        headers["Content-Type"] = attrs.content_type
    for name, value in attrs.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    if attrs.tags:
        headers["x-amz-tagging"] = urlencode(attrs.tags)
    if attrs.storage_class and attrs.storage_class != "STANDARD":
        headers["x-amz-storage-class"] = attrs.storage_class
    if not all(str(v).isascii() and "\n" not in str(v) for v in headers.values()):
        return None   # botocore knows how to send those
    return headers


_session_lock = threading.Lock()
_session = None


def _shared_session() -> boto3.session.Session:
    """One boto3 session per process: clients made from it share its loaded models,
    which makes a new client cheap; each client still gets its own credentials."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session


def _frozen(session) -> Credentials:
    found = session.get_credentials()
    if found is None:
        raise errors.AccessDenied("no credentials found (set an access key or a role)")
    frozen = found.get_frozen_credentials()
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


class S3Store:
    def __init__(self, spec: StoreSpec, *, pool_size: int = 32, policy: RetryPolicy = RetryPolicy()):
        self.spec = spec
        self.policy = policy
        creds = spec.credentials
        config = Config(retries={"max_attempts": 1, "mode": "standard"},
                        max_pool_connections=pool_size, connect_timeout=10, read_timeout=120,
                        s3={"addressing_style": "path"} if spec.endpoint_url else None,
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        self._client_args = dict(
            service_name="s3", endpoint_url=spec.endpoint_url, config=config, region_name=spec.region or "us-east-1",
            aws_access_key_id=creds.access_key_id if creds else None,
            aws_secret_access_key=creds.secret_access_key if creds else None,
            aws_session_token=creds.session_token if creds else None)
        self._client = None
        self._client_lock = threading.Lock()
        # The per-object hot path of path-style endpoints skips botocore (see s3http).
        self.lean = (S3Http(spec.endpoint_url, region=spec.region or "us-east-1", classify=classify,
                            credentials=(lambda: creds) if creds else (lambda: _frozen(_shared_session())))
                     if spec.endpoint_url else None)

    def _call(self, what: str, operation: str, **kwargs):
        method = getattr(self.client, operation)

        def attempt():
            try:
                return method(**kwargs)
            except Exception as exc:
                translated = translate(exc, what)
                if translated is None:
                    raise
                raise translated from exc
        return call_with_retries(attempt, self.policy)

    @property
    def client(self):
        """The boto3 client, made on first use: a worker copying only small objects
        through the lean path never pays for it."""
        with self._client_lock:
            if self._client is None:
                self._client = _shared_session().client(**self._client_args)
            return self._client

    def close(self) -> None:
        if self.lean:
            self.lean.close()
        if self._client is not None:
            self._client.close()

    def _lean(self, what: str, method: str, key: str, **kwargs) -> Response:
        path = object_path(self.spec.bucket, key)
        return call_with_retries(lambda: self.lean.request(what, method, path, **kwargs), self.policy)

    def _where(self, key: str = "") -> str:
        return self.spec.url(key)

    # -- reading -------------------------------------------------------------
    def check(self, write: bool = False) -> None:
        try:
            self._call(f"open {self._where()}", "head_bucket", Bucket=self.spec.bucket)
        except errors.NoSuchKey:   # HEAD has no body: a bare 404 here means the bucket
            raise errors.NoSuchBucket(f"open {self._where()}: the bucket does not exist") from None

    def list(self, prefix: str, *, recursive: bool = True, start_after: str | None = None,
             page_size: int = 1000) -> Iterator[list[ObjectInfo]]:
        kwargs = {"Bucket": self.spec.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if not recursive:
            kwargs["Delimiter"] = "/"
        token = None
        while True:
            page_args = dict(kwargs)
            if token:
                page_args["ContinuationToken"] = token
            elif start_after:
                page_args["StartAfter"] = start_after
            page = self._call(f"list {self._where(prefix)}", "list_objects_v2", **page_args)
            yield [ObjectInfo(o["Key"], o["Size"], o.get("ETag", "").strip('"') or None)
                   for o in page.get("Contents", ())]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def head(self, key: str) -> ObjectInfo | None:
        what = f"read {self._where(key)}"
        try:
            if self.lean:
                found = self._lean(what, "HEAD", key)
                return ObjectInfo(key, int(found.headers["content-length"]), found.etag)
            found = self._call(what, "head_object", Bucket=self.spec.bucket, Key=key)
        except errors.NoSuchKey:
            return None
        return ObjectInfo(key, found["ContentLength"], found.get("ETag", "").strip('"') or None)

    def attributes(self, key: str) -> ObjectAttributes:
        found = self._call(f"read {self._where(key)}", "head_object", Bucket=self.spec.bucket, Key=key)
        return ObjectAttributes(
            content_type=found.get("ContentType"), metadata=found.get("Metadata", {}),
            headers={h: found[h] for h in COPIED_HEADERS if found.get(h)},
            tags=self.tags(key), storage_class=found.get("StorageClass"))

    def tags(self, key: str) -> dict:
        found = self._call(f"read tags of {self._where(key)}", "get_object_tagging",
                           Bucket=self.spec.bucket, Key=key)
        return {t["Key"]: t["Value"] for t in found.get("TagSet", ())}

    def get(self, key: str, *, etag: str | None, offset: int = 0, length: int | None = None) -> Download:
        kwargs = {"Bucket": self.spec.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = etag
        if length:
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        found = self._call(f"read {self._where(key)}", "get_object", **kwargs)
        attrs = ObjectAttributes(content_type=found.get("ContentType"), metadata=found.get("Metadata", {}),
                                 headers={h: found[h] for h in COPIED_HEADERS if found.get(h)},
                                 storage_class=found.get("StorageClass"))
        return Download(found["Body"], found["ContentLength"], found.get("ETag", "").strip('"') or None,
                        attrs, found.get("TagCount", 0))

    # -- writing -------------------------------------------------------------
    @staticmethod
    def _attribute_args(attrs: ObjectAttributes) -> dict:
        args = dict(attrs.headers)
        if attrs.content_type:
            args["ContentType"] = attrs.content_type
        if attrs.metadata:
            args["Metadata"] = attrs.metadata
        if attrs.tags:
            args["Tagging"] = urlencode(attrs.tags)
        if attrs.storage_class and attrs.storage_class != "STANDARD":
            args["StorageClass"] = attrs.storage_class
        return args

    def put(self, key: str, data: bytes, *, md5: bytes, attrs: ObjectAttributes) -> str:
        what = f"write {self._where(key)}"
        headers = _attribute_headers(attrs) if self.lean else None
        if headers is not None:
            headers["Content-MD5"] = _md5_header(md5)
            return self._lean(what, "PUT", key, headers=headers, body=data).etag or ""
        found = self._call(what, "put_object", Bucket=self.spec.bucket, Key=key,
                           Body=data, ContentMD5=_md5_header(md5), **self._attribute_args(attrs))
        return found["ETag"].strip('"')

    def copy_from(self, source: StoreSpec, key: str, dest_key: str, *, etag: str | None) -> dict:
        """Server-side CopyObject from ``source`` (same endpoint); metadata and tags follow."""
        what = f"copy {source.url(key)} to {self._where(dest_key)}"
        if self.lean:
            headers = {"x-amz-copy-source": object_path(source.bucket, key)[1:]}
            if etag:
                headers["x-amz-copy-source-if-match"] = f'"{etag}"'
            return {"ETag": self._lean(what, "PUT", dest_key, headers=headers, error_in_200=True).etag}
        kwargs = {"Bucket": self.spec.bucket, "Key": dest_key,
                  "CopySource": {"Bucket": source.bucket, "Key": key}}
        if etag:
            kwargs["CopySourceIfMatch"] = etag
        return self._call(what, "copy_object", **kwargs)["CopyObjectResult"]

    def create_multipart(self, key: str, attrs: ObjectAttributes) -> str:
        found = self._call(f"start multipart upload of {self._where(key)}", "create_multipart_upload",
                           Bucket=self.spec.bucket, Key=key, **self._attribute_args(attrs))
        return found["UploadId"]

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes, *,
                    md5: bytes, offset: int) -> str:
        found = self._call(f"write part {part_number} of {self._where(key)}", "upload_part",
                           Bucket=self.spec.bucket, Key=key, UploadId=upload_id, PartNumber=part_number,
                           Body=data, ContentMD5=_md5_header(md5))
        return found["ETag"].strip('"')

    def upload_part_copy(self, source: StoreSpec, key: str, dest_key: str, *, upload_id: str,
                         part_number: int, offset: int, length: int, etag: str | None) -> str:
        kwargs = {"Bucket": self.spec.bucket, "Key": dest_key, "UploadId": upload_id,
                  "PartNumber": part_number, "CopySource": {"Bucket": source.bucket, "Key": key},
                  "CopySourceRange": f"bytes={offset}-{offset + length - 1}"}
        if etag:
            kwargs["CopySourceIfMatch"] = etag
        found = self._call(f"copy part {part_number} of {source.url(key)}", "upload_part_copy", **kwargs)
        return found["CopyPartResult"]["ETag"].strip('"')

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict]) -> str:
        listed = [{"PartNumber": p["part_number"], "ETag": f'"{p["etag"]}"'}
                  for p in sorted(parts, key=lambda p: p["part_number"])]
        try:
            found = self._call(f"complete {self._where(key)}", "complete_multipart_upload",
                               Bucket=self.spec.bucket, Key=key, UploadId=upload_id,
                               MultipartUpload={"Parts": listed})
        except errors.StoreError as exc:
            if "NoSuchUpload" not in str(exc):
                raise
            return ""   # completed by an earlier delivery of the same task
        return found["ETag"].strip('"')

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call(f"abort upload of {self._where(key)}", "abort_multipart_upload",
                       Bucket=self.spec.bucket, Key=key, UploadId=upload_id)
        except errors.StoreError:
            pass  # already completed or aborted: nothing left to clean up

    def delete(self, key: str) -> None:
        if self.lean:
            self._lean(f"delete {self._where(key)}", "DELETE", key)
        else:
            self._call(f"delete {self._where(key)}", "delete_object", Bucket=self.spec.bucket, Key=key)
