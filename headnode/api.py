"""The REST API (``/api/v1``), described by the OpenAPI document it serves.

Thin edge: parse with marshmallow, call the job service, shape the answer.
Every call is admitted by role (``auth``): a signed-in session or an API token
(``Authorization: Bearer …``); errors carry a stable ``code`` and a message,
rendered by one handler.
"""
from __future__ import annotations

from flask import current_app
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields, validate

from pipeline import errors, messages
from headnode import savings
from headnode.usage import job_usage
from headnode.auth import EVERYONE, RUNNERS, allow, caller

blp = Blueprint("jobs", __name__, url_prefix="/api/v1", description="Copy and move jobs")


class JobCreate(Schema):
    source = fields.String(required=True, metadata={"description": "s3://bucket/prefix, folder:NAME/path or a path"})
    destination = fields.String(required=True)
    name = fields.String(load_default=None, validate=validate.Length(max=200))
    move = fields.Boolean(load_default=False)
    recursive = fields.Boolean(load_default=True)
    sync = fields.Boolean(load_default=False)
    tier = fields.String(load_default="express", validate=validate.OneOf(messages.TIERS))
    codec = fields.String(load_default="none", validate=validate.OneOf(messages.CODEC_MODES), metadata={
        "description": "Image codec: compress images in the source region before they travel, "
                       "decompress them in the destination region, or none"})
    endpoint_url = fields.String(load_default=None, allow_none=True)
    notify = fields.List(fields.String(), load_default=list, metadata={
        "description": "User names to email when the job completes, completes with warnings or fails"})


class CodecOut(Schema):
    mode = fields.String(metadata={"description": "compress or decompress"})
    objects_encoded = fields.Integer()
    objects_decoded = fields.Integer()
    bytes_read = fields.Integer(metadata={"description": "Bytes of the encoded/decoded objects at the source"})
    bytes_written = fields.Integer(metadata={"description": "Their bytes at the destination"})
    bytes_saved = fields.Integer(metadata={"description": "Original bytes minus encoded bytes"})
    transfer_cost_saved_usd = fields.Float(metadata={"description": "bytes_saved × TRANSFER_PRICE_PER_GB"})
    storage_cost_saved_per_month_usd = fields.Float(metadata={
        "description": "bytes_saved × STORAGE_PRICE_PER_GB_MONTH (compress jobs; a decompress job stores originals)"})


class _CodecSummary(fields.Nested):
    """A job's codec block: computed with the head node's prices, documented as ``CodecOut``."""

    def get_value(self, obj, attr, accessor=None, default=None):
        return savings.codec_summary(obj, _service().config)


class JobOut(Schema):
    id = fields.Integer()
    name = fields.String()
    state = fields.String(metadata={"description": "queued, planning, running, complete, "
                                                   "complete_with_warnings, failed or cancelled"})
    source_url = fields.String()
    destination_url = fields.String()
    options = fields.Dict()
    region = fields.String()
    submitted_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    planning_done = fields.Boolean()
    objects_total = fields.Integer()
    bytes_total = fields.Integer()
    objects_done = fields.Integer()
    objects_skipped = fields.Integer()
    bytes_done = fields.Integer()
    objects_failed = fields.Integer()
    objects_deleted = fields.Integer()
    retries = fields.Integer()
    error = fields.String(allow_none=True)
    bytes_saved = fields.Integer(metadata={"description": "Bytes the image codec saved (0 without it)"})
    usage = fields.Function(lambda job: job_usage(job, _service().config), allow_none=True, metadata={
        "description": "EC2 worker instance-hours the job used and their cost at the price table "
                       "(null without EC2 workers); compare with POST /jobs/estimate"})
    codec = _CodecSummary(CodecOut, allow_none=True, dump_only=True,
                          metadata={"description": "Image codec results; null for a job without the codec"})


class FailureOut(Schema):
    key = fields.String()
    reason = fields.String()
    kind = fields.String(metadata={"description": "copy (object not copied) or delete (source kept)"})


class LogOut(Schema):
    at = fields.DateTime()
    level = fields.String()
    message = fields.String()


class PageArgs(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class ListArgs(Schema):
    all = fields.Boolean(load_default=True, metadata={"description": "include finished jobs"})
    finished_within = fields.Integer(load_default=0, validate=validate.Range(min=0, max=86400), metadata={
        "description": "with all=false: also jobs that finished in the last this many seconds"})


def _service():
    return current_app.extensions["cloudmover.jobs"]


def _job_folders() -> dict | None:
    """The folders the caller may name in a job; None for the node's operator, who may name any location."""
    who = caller()
    return None if who.via == "operator" else current_app.extensions["cloudmover.folders"].job_folders(who)


@blp.route("/jobs", methods=["POST"])
@blp.arguments(JobCreate)
@blp.response(201, JobOut)
@allow(*RUNNERS)
def create_job(body):
    """Create a job: validated against the stores, then planned and run (Admin, Wrangler).

    Users name folders granted to them (``folder:NAME/path``); the node's operator token may
    name any location."""
    return _service().create(submitted_by=caller().username, folders=_job_folders(), **body)


class EstimateIn(Schema):
    source = fields.String(required=True)
    destination = fields.String(required=True)
    recursive = fields.Boolean(load_default=True)
    sync = fields.Boolean(load_default=False)
    move = fields.Boolean(load_default=False)
    tier = fields.String(load_default="express", validate=validate.OneOf(messages.TIERS))
    codec = fields.String(load_default="none", validate=validate.OneOf(messages.CODEC_MODES))


class EstimateOut(Schema):
    objects = fields.Integer()
    bytes = fields.Integer()
    exact = fields.Boolean(metadata={"description": "false: extrapolated from a bounded sample of the listing"})
    duration_seconds = fields.Float(metadata={"description": "with the tier's worker fleet in AWS"})
    cost_usd = fields.Float(metadata={"description": "instances, S3 requests and inter-region transfer at the "
                                                     "shipped (or PRICE_TABLE) on-demand list prices"})
    workers = fields.Integer()
    instance_type = fields.String()
    detail = fields.Dict(metadata={"description": "every figure of the estimate and its assumptions"})


@blp.route("/jobs/estimate", methods=["POST"])
@blp.arguments(EstimateIn)
@blp.response(200, EstimateOut)
@allow(*RUNNERS)
def estimate_job(body):
    """Objects, bytes, duration and cost of a job before it is submitted (listing sampled when huge)."""
    return _service().estimate(folders=_job_folders(), **body)


class CheckOut(Schema):
    name = fields.String()
    ok = fields.Boolean()
    message = fields.String(metadata={"description": "what was found, or what to fix"})
    warning = fields.Boolean(metadata={"description": "passed, but could not be fully verified"})


class PreflightIn(Schema):
    source = fields.String(required=True)
    destination = fields.String(required=True)
    tier = fields.String(load_default="express", validate=validate.OneOf(messages.TIERS))
    codec = fields.String(load_default="none", validate=validate.OneOf(messages.CODEC_MODES))


@blp.route("/jobs/preflight", methods=["POST"])
@blp.arguments(PreflightIn)
@blp.response(200, CheckOut(many=True))
@allow(*RUNNERS)
def preflight_job(body):
    """The checks a job must pass before any worker starts (region settings, network, worker role,
    buckets, EC2 quota with the ec2 fleet; buckets otherwise), without creating it."""
    return _service().preflight_checks(folders=_job_folders(), **body)


@blp.route("/jobs", methods=["GET"])
@blp.arguments(ListArgs, location="query")
@blp.response(200, JobOut(many=True))
@allow(*EVERYONE)
def list_jobs(args):
    """Jobs, newest first."""
    return _service().list(include_finished=args["all"], finished_within=args["finished_within"])


class JobArgs(Schema):
    wait = fields.Float(load_default=0, validate=validate.Range(min=0, max=30), metadata={
        "description": "answer as soon as the job finishes, or after this many seconds (a long poll)"})


@blp.route("/jobs/<int:job_id>", methods=["GET"])
@blp.arguments(JobArgs, location="query")
@blp.response(200, JobOut)
@allow(*EVERYONE)
def get_job(args, job_id):
    if args["wait"]:
        return _service().await_finish(job_id, timeout=args["wait"])
    return _service().get(job_id)


@blp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@blp.response(200, JobOut)
@allow(*RUNNERS)
def cancel_job(job_id):
    return _service().cancel(job_id, actor=caller().username)


@blp.route("/jobs/<int:job_id>/retry", methods=["POST"])
@blp.response(200, JobOut)
@allow(*RUNNERS)
def retry_job(job_id):
    """Copy the failed objects of a finished job again."""
    return _service().retry_failed(job_id, actor=caller().username)


@blp.route("/jobs/<int:job_id>/failures", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, FailureOut(many=True))
@allow(*EVERYONE)
def job_failures(args, job_id):
    _service().get(job_id)
    return _service().failures(job_id, limit=args["limit"], offset=args["offset"])


@blp.route("/jobs/<int:job_id>/log", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.response(200, LogOut(many=True))
@allow(*EVERYONE)
def job_log(args, job_id):
    from headnode.models import JobLog
    job = _service().get(job_id)
    return list(JobLog.select().where(JobLog.job == job).order_by(JobLog.id)
                .limit(args["limit"]).offset(args["offset"]))


class ErrorOut(Schema):
    """What every error of the API answers (for the OpenAPI document)."""
    code = fields.String(metadata={"description": "what went wrong, as a word: not_found, conflict, "
                                                  "unprocessable_entity, preflight_failed, …"})
    message = fields.String(metadata={"description": "what went wrong, for a person"})
    status = fields.Integer(metadata={"description": "the HTTP status"})
    errors = fields.Dict(metadata={"description": "field errors by location (json, query) of a request "
                                                  "that failed validation"})
    checks = fields.List(fields.Dict(), metadata={"description": "every check of a failed pre-flight"})


class RestApi(Api):
    """flask-smorest's API, its HTTP errors (a request that fails validation, a malformed
    body, an unknown route) in the shape of every other error of the API: a code word, a
    message a person can read, the status, and the field errors where there are some."""
    ERROR_SCHEMA = ErrorOut

    def handle_http_exception(self, error):
        payload, status, headers = super().handle_http_exception(error)
        body = {"code": error.name.lower().replace(" ", "_"), "status": status,
                "message": payload.get("message") or field_summary(payload.get("errors")) or error.description}
        if "errors" in payload:
            body["errors"] = payload["errors"]
        return body, status, headers


def field_summary(errors: dict | None) -> str:
    """``field: problem; …`` from marshmallow's errors by location ({"json": {"tier": [...]}})."""
    parts = []

    def walk(path: list[str], found) -> None:
        if isinstance(found, dict):
            for key, inner in found.items():
                walk(path if key == "_schema" else [*path, str(key)], inner)
        else:
            problems = " ".join(map(str, found if isinstance(found, list) else [found]))
            parts.append(f"{'.'.join(path) or 'request'}: {problems}")

    for found in (errors or {}).values():
        walk([], found)
    return "; ".join(parts)


STATUS = {"not_found": 404, "conflict": 409, "forbidden": 403, "sign_in_failed": 401, "locked": 429,
          "password_change_required": 403, "preflight_failed": 422}


def render_pipeline_error(exc: errors.PipelineError):
    status = STATUS.get(exc.code, 400)
    body = {"code": exc.code, "message": str(exc), "status": status}
    if hasattr(exc, "as_dicts"):   # a failed pre-flight: every check, to show what to fix
        body["checks"] = exc.as_dicts()
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else {}
    return body, status, headers
