"""An S3 bucket on AWS or any S3-compatible endpoint.

On path-style endpoints (``--endpoint-url``) what a server-side copy needs
goes through the lean path (``s3http``, formats in ``s3wire``): bucket checks,
listings, HEAD, tags, CopyObject, PutObject, DeleteObject and the multipart
copy (create, UploadPartCopy, complete). Streamed reads, UploadPart, aborts,
headers that are not plain ASCII, and every request to AWS itself go through
boto3 (``s3boto``), which is loaded only when such a request is made. botocore's own retries are off: every
request goes through ``call_with_retries`` so throttling (503 SlowDown) and
transient failures are retried with backoff *and counted* for the job's log.
Store errors are classified here, once, into pipeline errors that say what to
do next.
"""
from __future__ import annotations

import base64
import threading
from typing import Iterator
from urllib.parse import urlencode

from pipeline import errors, s3wire
from pipeline.checksums import etag_is_md5
from pipeline.credentials import Credentials, from_environment
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
# an archived object (S3 Glacier Flexible Retrieval or Deep Archive): no read or copy until restored
ARCHIVED_CODES = {"InvalidObjectState", "ObjectNotInActiveTierError"}
COPIED_HEADERS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
                  "Expires", "WebsiteRedirectLocation")


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
    if code in ARCHIVED_CODES:
        return errors.StoreError(f"{what}: the object is archived ({code}): restore it from its archive "
                                 "storage class (S3 RestoreObject), then retry the job's failed objects")
    if code == "InvalidDigest":
        return errors.VerificationFailed(detail)
    return errors.StoreError(detail)


def _boto_etag_is_md5(found: dict) -> bool:
    """``etag_is_md5`` of a boto3 answer (its raw headers)."""
    return etag_is_md5(found.get("ResponseMetadata", {}).get("HTTPHeaders", {}))


def _listed_objects(page: dict) -> list[ObjectInfo]:
    """The objects of a boto3 ListObjectsV2 answer."""
    return [ObjectInfo(o["Key"], o["Size"], o.get("ETag", "").strip('"') or None) for o in page.get("Contents", ())]


def _next_token(page: dict) -> str | None:
    return page["NextContinuationToken"] if page.get("IsTruncated") else None


def _md5_header(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def default_credentials() -> Credentials:
    """The default chain's credentials: the environment's key pair when set (the chain's first
    source, read without loading boto3), otherwise whatever boto3's whole chain finds."""
    found = from_environment()
    if found is not None:
        return found
    from pipeline import s3boto
    return s3boto.chain_credentials()


class S3Store:
    def __init__(self, spec: StoreSpec, *, pool_size: int = 32, policy: RetryPolicy = RetryPolicy()):
        self.spec = spec
        self.policy = policy
        self._pool_size = pool_size
        self._client = None
        self._client_lock = threading.Lock()
        creds = spec.credentials
        # The hot path of path-style endpoints skips botocore (see s3http).
        self.lean = (S3Http(spec.endpoint_url, region=spec.region or "us-east-1", classify=classify,
                            credentials=(lambda: creds) if creds else default_credentials)
                     if spec.endpoint_url else None)

    def _call(self, what: str, operation: str, **kwargs):
        from pipeline import s3boto
        method = getattr(self.client, operation)

        def attempt():
            try:
                return method(**kwargs)
            except Exception as exc:
                translated = s3boto.translate(exc, what=what, classify=classify)
                if translated is None:
                    raise
                raise translated from exc
        return call_with_retries(attempt, self.policy)

    @property
    def client(self):
        """The boto3 client, made on first use: a worker or head node served by the lean
        path never pays for boto3."""
        with self._client_lock:
            if self._client is None:
                from pipeline import s3boto
                self._client = s3boto.new_client(endpoint_url=self.spec.endpoint_url,
                                                 region=self.spec.region or "us-east-1",
                                                 credentials=self.spec.credentials, pool_size=self._pool_size)
            return self._client

    def close(self) -> None:
        if self.lean:
            self.lean.close()
        if self._client is not None:
            self._client.close()

    def _lean(self, what: str, method: str, key: str | None, **kwargs) -> Response:
        """One request to the object ``key`` (None: the bucket), retried as boto3 calls are."""
        path = object_path(self.spec.bucket, key)
        return call_with_retries(lambda: self.lean.request(what, method, path, **kwargs), self.policy)

    def _where(self, key: str = "") -> str:
        return self.spec.url(key)

    # -- reading -------------------------------------------------------------
    def check(self, write: bool = False) -> None:
        what = f"open {self._where()}"
        try:
            if self.lean:
                self._lean(what, "HEAD", None)
            else:
                self._call(what, "head_bucket", Bucket=self.spec.bucket)
        except errors.NoSuchKey:   # HEAD has no body: a bare 404 here means the bucket
            raise errors.NoSuchBucket(f"{what}: the bucket does not exist") from None

    def list(self, prefix: str, *, recursive: bool = True, start_after: str | None = None,
             page_size: int = 1000, first_page_size: int | None = None) -> Iterator[list[ObjectInfo]]:
        token, size = None, first_page_size or page_size
        while True:
            if self.lean:
                page, token = self._lean_list_page(prefix, recursive=recursive, token=token,
                                                   start_after=start_after, page_size=size)
            else:
                page, token = self._boto_list_page(prefix, recursive=recursive, token=token,
                                                   start_after=start_after, page_size=size)
            yield page
            if token is None:
                return
            size = page_size

    def _lean_list_page(self, prefix: str, *, recursive: bool, token: str | None, start_after: str | None,
                        page_size: int) -> tuple[list[ObjectInfo], str | None]:
        # keys come URL-encoded (as botocore asks for them too): XML 1.0 cannot carry every key
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(page_size), "encoding-type": "url"}
        if not recursive:
            query["delimiter"] = "/"
        if token:
            query["continuation-token"] = token
        elif start_after:
            query["start-after"] = start_after
        what = f"list {self._where(prefix)}"
        found = self._lean(what, "GET", None, query=query)
        return s3wire.parse_listing(found.body, what=what)

    def _boto_list_page(self, prefix: str, *, recursive: bool, token: str | None, start_after: str | None,
                        page_size: int) -> tuple[list[ObjectInfo], str | None]:
        kwargs = {"Bucket": self.spec.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if not recursive:
            kwargs["Delimiter"] = "/"
        if token:
            kwargs["ContinuationToken"] = token
        elif start_after:
            kwargs["StartAfter"] = start_after
        page = self._call(f"list {self._where(prefix)}", "list_objects_v2", **kwargs)
        return _listed_objects(page), _next_token(page)

    def browse(self, prefix: str, *, token: str | None = None,
               limit: int = 1000) -> tuple[list[str], list[ObjectInfo], str | None]:
        """One page of the "directory" ``prefix``: sub-prefixes, objects, and the next page's token."""
        kwargs = {"Bucket": self.spec.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": limit}
        if token:
            kwargs["ContinuationToken"] = token
        page = self._call(f"list {self._where(prefix)}", "list_objects_v2", **kwargs)
        prefixes = [p["Prefix"] for p in page.get("CommonPrefixes", ())]
        return prefixes, _listed_objects(page), _next_token(page)

    def bucket_region(self) -> str | None:
        """The region the store says the bucket is in (None: it does not say, as many S3-compatible
        stores do not); S3 answers an empty location for us-east-1 and "EU" for eu-west-1."""
        found = self._call(f"locate {self._where()}", "get_bucket_location", Bucket=self.spec.bucket)
        location = found.get("LocationConstraint")
        if not location:
            return None if self.spec.endpoint_url else "us-east-1"
        return "eu-west-1" if location == "EU" else location

    def head(self, key: str) -> ObjectInfo | None:
        what = f"read {self._where(key)}"
        try:
            if self.lean:
                found = self._lean(what, "HEAD", key)
                return ObjectInfo(key, int(found.headers["content-length"]), found.etag,
                                  etag_is_md5=etag_is_md5(found.headers))
            found = self._call(what, "head_object", Bucket=self.spec.bucket, Key=key)
        except errors.NoSuchKey:
            return None
        return ObjectInfo(key, found["ContentLength"], found.get("ETag", "").strip('"') or None,
                          etag_is_md5=_boto_etag_is_md5(found))

    def metadata(self, key: str) -> dict | None:
        """An object's user metadata (None: no such object)."""
        try:
            return self._head_attributes(key).metadata
        except errors.NoSuchKey:
            return None

    def part_size(self, key: str) -> int | None:
        """The size of the first part of an object uploaded in parts (None: a store that does
        not say, as AWS does not for an object put whole; SeaweedFS calls that one part): S3
        answers a HEAD of one part with its length and the part count."""
        what = f"read {self._where(key)}"
        try:
            if self.lean:
                found = self._lean(what, "HEAD", key, query={"partNumber": "1"})
                length, parts = found.headers.get("content-length"), found.headers.get("x-amz-mp-parts-count")
            else:
                answer = self._call(what, "head_object", Bucket=self.spec.bucket, Key=key, PartNumber=1)
                length, parts = answer.get("ContentLength"), answer.get("PartsCount")
        except (errors.AccessDenied, errors.NoSuchBucket):
            raise
        except errors.StoreError:       # gone, or a store that refuses the question: it does not say
            return None
        return int(length) if parts and length is not None else None

    @staticmethod
    def problem(key: str) -> None:
        """A key names an object or nothing: never an entry that is no object (see LocalStore's)."""
        return None

    def attributes(self, key: str) -> ObjectAttributes:
        attrs = self._head_attributes(key)
        attrs.tags = self.tags(key)
        return attrs

    def _head_attributes(self, key: str) -> ObjectAttributes:
        """What a HEAD of the object says follows it to its copy (all but its tags)."""
        what = f"read {self._where(key)}"
        if self.lean:
            return s3wire.attributes_from_headers(self._lean(what, "HEAD", key).headers)
        found = self._call(what, "head_object", Bucket=self.spec.bucket, Key=key)
        return ObjectAttributes(
            content_type=found.get("ContentType"), metadata=found.get("Metadata", {}),
            headers={h: found[h] for h in COPIED_HEADERS if found.get(h)}, storage_class=found.get("StorageClass"))

    def tags(self, key: str) -> dict:
        what = f"read tags of {self._where(key)}"
        if self.lean:
            return s3wire.parse_tags(self._lean(what, "GET", key, query={"tagging": ""}).body, what=what)
        found = self._call(what, "get_object_tagging", Bucket=self.spec.bucket, Key=key)
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
                        attrs, found.get("TagCount", 0), etag_is_md5=_boto_etag_is_md5(found))

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
        """Write the object (the store checks ``md5``, sent as Content-MD5); its ETag, or ""
        where the store says it is no MD5 of the content (an encrypting bucket)."""
        what = f"write {self._where(key)}"
        headers = s3wire.attribute_headers(attrs) if self.lean else None
        if headers is not None:
            headers["Content-MD5"] = _md5_header(md5)
            found = self._lean(what, "PUT", key, headers=headers, body=data)
            return (found.etag or "") if etag_is_md5(found.headers) else ""
        found = self._call(what, "put_object", Bucket=self.spec.bucket, Key=key,
                           Body=data, ContentMD5=_md5_header(md5), **self._attribute_args(attrs))
        return found["ETag"].strip('"') if _boto_etag_is_md5(found) else ""

    def copy_from(self, source: StoreSpec, key: str, dest_key: str, *, etag: str | None) -> str | None:
        """Server-side CopyObject from ``source`` (same endpoint; metadata and tags follow): the
        copy's ETag, or None where the store says it is no MD5 of the content."""
        what = f"copy {source.url(key)} to {self._where(dest_key)}"
        if self.lean:
            headers = {"x-amz-copy-source": object_path(source.bucket, key)[1:]}
            if etag:
                headers["x-amz-copy-source-if-match"] = f'"{etag}"'
            found = self._lean(what, "PUT", dest_key, headers=headers, error_in_200=True)
            return found.etag if etag_is_md5(found.headers) else None
        kwargs = {"Bucket": self.spec.bucket, "Key": dest_key,
                  "CopySource": {"Bucket": source.bucket, "Key": key}}
        if etag:
            kwargs["CopySourceIfMatch"] = etag
        found = self._call(what, "copy_object", **kwargs)
        landed = (found["CopyObjectResult"].get("ETag") or "").strip('"')
        return landed if landed and _boto_etag_is_md5(found) else None

    def create_multipart(self, key: str, attrs: ObjectAttributes) -> str:
        what = f"start multipart upload of {self._where(key)}"
        headers = s3wire.attribute_headers(attrs) if self.lean else None
        if headers is not None:
            found = self._lean(what, "POST", key, headers=headers, query={"uploads": ""})
            return s3wire.xml_text(found.body, "UploadId", what=what)
        found = self._call(what, "create_multipart_upload", Bucket=self.spec.bucket, Key=key,
                           **self._attribute_args(attrs))
        return found["UploadId"]

    def upload_part(self, key: str, upload_id: str, part_number: int, data: bytes, *,
                    md5: bytes, offset: int) -> str:
        found = self._call(f"write part {part_number} of {self._where(key)}", "upload_part",
                           Bucket=self.spec.bucket, Key=key, UploadId=upload_id, PartNumber=part_number,
                           Body=data, ContentMD5=_md5_header(md5))
        return found["ETag"].strip('"')

    def upload_part_copy(self, source: StoreSpec, key: str, dest_key: str, *, upload_id: str,
                         part_number: int, offset: int, length: int, etag: str | None) -> str:
        what = f"copy part {part_number} of {source.url(key)}"
        if self.lean:
            headers = {"x-amz-copy-source": object_path(source.bucket, key)[1:],
                       "x-amz-copy-source-range": f"bytes={offset}-{offset + length - 1}"}
            if etag:
                headers["x-amz-copy-source-if-match"] = f'"{etag}"'
            found = self._lean(what, "PUT", dest_key, headers=headers, error_in_200=True,
                               query={"partNumber": str(part_number), "uploadId": upload_id})
            return s3wire.xml_text(found.body, "ETag", what=what).strip('"')
        kwargs = {"Bucket": self.spec.bucket, "Key": dest_key, "UploadId": upload_id,
                  "PartNumber": part_number, "CopySource": {"Bucket": source.bucket, "Key": key},
                  "CopySourceRange": f"bytes={offset}-{offset + length - 1}"}
        if etag:
            kwargs["CopySourceIfMatch"] = etag
        found = self._call(what, "upload_part_copy", **kwargs)
        return found["CopyPartResult"]["ETag"].strip('"')

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict]) -> str:
        what = f"complete {self._where(key)}"
        try:
            if self.lean:
                found = self._lean(what, "POST", key, body=s3wire.complete_body(parts), error_in_200=True,
                                   query={"uploadId": upload_id})
                return s3wire.xml_text(found.body, "ETag", what=what).strip('"')
            listed = [{"PartNumber": p["part_number"], "ETag": f'"{p["etag"]}"'}
                      for p in sorted(parts, key=lambda p: p["part_number"])]
            found = self._call(what, "complete_multipart_upload", Bucket=self.spec.bucket, Key=key,
                               UploadId=upload_id, MultipartUpload={"Parts": listed})
        except errors.StoreError as exc:
            if "NoSuchUpload" not in str(exc):
                raise
            return ""   # completed by an earlier delivery of the same task
        return found["ETag"].strip('"')

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self._call(f"abort upload of {self._where(key)}", "abort_multipart_upload",
                       Bucket=self.spec.bucket, Key=key, UploadId=upload_id)
        except errors.StoreError as exc:
            if "NoSuchUpload" not in str(exc):
                raise   # refused (denied, no bucket): the caller says the upload may linger
            # already completed or aborted: nothing left to clean up

    def delete(self, key: str, *, etag: str | None = None) -> None:
        """``etag`` is not sent: S3-compatible stores do not agree on conditional deletes."""
        if self.lean:
            self._lean(f"delete {self._where(key)}", "DELETE", key)
        else:
            self._call(f"delete {self._where(key)}", "delete_object", Bucket=self.spec.bucket, Key=key)
