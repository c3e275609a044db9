"""REST API for admins' views of the running system: workers and job logs."""
from __future__ import annotations

import csv
import io

from flask import Response
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from headnode.auth import allow
from headnode.models import Job, JobLog, WorkerState

blp = Blueprint("admin", __name__, url_prefix="/api/v1", description="Workers and logs (admins)")
LOG_LEVELS = ("info", "warning", "error")


class WorkerOut(Schema):
    worker_id = fields.String()
    region = fields.String()
    state = fields.String(metadata={"description": "idle, busy or stopping"})
    last_seen = fields.DateTime(metadata={"description": "last heartbeat (UTC)"})
    first_seen = fields.DateTime()
    tasks_done = fields.Integer()
    bytes_done = fields.Integer()
    bytes_per_second = fields.Float(metadata={"description": "throughput between its last two heartbeats"})


class LogArgs(Schema):
    job = fields.Integer(load_default=None)
    level = fields.String(load_default=None, validate=validate.OneOf(LOG_LEVELS))
    contains = fields.String(load_default=None, validate=validate.Length(max=200))
    limit = fields.Integer(load_default=500, validate=validate.Range(min=1, max=10000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class LogLineOut(Schema):
    id = fields.Integer()
    job = fields.Function(lambda line: line.job_id)
    at = fields.DateTime()
    level = fields.String()
    message = fields.String()


@blp.route("/workers", methods=["GET"])
@blp.response(200, WorkerOut(many=True))
@allow("admin")
def list_workers():
    """Workers by region, with their state, last heartbeat and throughput."""
    return list(WorkerState.select().order_by(WorkerState.region, WorkerState.worker_id))


@blp.route("/logs", methods=["GET"])
@blp.arguments(LogArgs, location="query")
@blp.response(200, LogLineOut(many=True))
@allow("admin")
def job_logs(args):
    """Job log lines, newest first, filtered by job, level and text; ``format=csv`` downloads them."""
    query = JobLog.select().order_by(JobLog.id.desc())
    if args["job"] is not None:
        query = query.where(JobLog.job == args["job"])
    if args["level"]:
        query = query.where(JobLog.level == args["level"])
    if args["contains"]:
        query = query.where(JobLog.message.contains(args["contains"]))
    lines = list(query.limit(args["limit"]).offset(args["offset"]))
    if args["format"] == "csv":
        return _csv(lines)
    return lines


def _csv(lines: list[JobLog]) -> Response:
    names = {job.id: job.name for job in Job.select(Job.id, Job.name).where(
        Job.id.in_({line.job_id for line in lines} or {0}))}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "job", "job name", "level", "message"])
    for line in lines:
        writer.writerow([line.at.isoformat(), line.job_id, names.get(line.job_id, ""), line.level, line.message])
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=cloudmover-job-logs.csv"})
