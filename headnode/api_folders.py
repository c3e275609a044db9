"""REST API for folders (S3 buckets users copy between), who may use them, and
per-region worker settings. Secrets go in, never come out."""
from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from headnode import worker_settings
from headnode.auth import EVERYONE, allow, caller
from headnode.folders import ACCESS_TYPES, FolderForm, s3_regions
from headnode.models import WORKER_PATHS

blp = Blueprint("folders", __name__, url_prefix="/api/v1", description="Folders and worker settings")


def _folders():
    return current_app.extensions["cloudmover.folders"]


class FolderIn(Schema):
    name = fields.String(required=True)
    bucket = fields.String(required=True)
    region = fields.String(required=True)
    prefix = fields.String(load_default="")
    endpoint_url = fields.String(load_default=None, allow_none=True, metadata={
        "description": "An S3-compatible store's endpoint; empty for AWS"})
    access_type = fields.String(load_default="role", validate=validate.OneOf(tuple(ACCESS_TYPES)))
    access_key_id = fields.String(load_default=None, allow_none=True)
    secret_access_key = fields.String(load_default=None, allow_none=True, load_only=True, metadata={
        "description": "Write-only; leave empty when editing to keep the stored one"})
    session_token = fields.String(load_default=None, allow_none=True, load_only=True)


class FolderOut(Schema):
    id = fields.Integer()
    name = fields.String()
    bucket = fields.String()
    prefix = fields.String()
    region = fields.String()
    endpoint_url = fields.String(allow_none=True)
    access_type = fields.String()
    access_key_id = fields.String(allow_none=True)
    has_secret = fields.Function(lambda f: bool(f.sealed_secret))


class GrantsIo(Schema):
    users = fields.List(fields.Integer(), required=True)


class BrowseArgs(Schema):
    path = fields.String(load_default="")
    token = fields.String(load_default=None)
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=1000))


class SettingsIn(Schema):
    vpc_id = fields.String(required=True)
    subnet_id = fields.String(required=True)
    head_node_path = fields.String(required=True, validate=validate.OneOf(WORKER_PATHS))


class SettingsOut(SettingsIn):
    region = fields.String()
    updated_at = fields.DateTime()


@blp.route("/regions", methods=["GET"])
@blp.response(200)
@allow(*EVERYONE)
def regions():
    """Every S3 region (for drop-downs)."""
    return {"regions": list(s3_regions()), "access_types": ACCESS_TYPES}


@blp.route("/folders", methods=["GET"])
@blp.response(200, FolderOut(many=True))
@allow(*EVERYONE)
def list_folders():
    """The folders the caller may use (admins: all)."""
    return _folders().visible(caller())


@blp.route("/folders", methods=["POST"])
@blp.arguments(FolderIn)
@blp.response(201, FolderOut)
@allow("admin")
def add_folder(body):
    """Add a folder: saved only once the store accepts its credentials, bucket and region."""
    return _folders().add(caller(), FolderForm(**body))


@blp.route("/folders/<int:folder_id>", methods=["GET"])
@blp.response(200, FolderOut)
@allow(*EVERYONE)
def get_folder(folder_id):
    return _folders().get(caller(), folder_id)


@blp.route("/folders/<int:folder_id>", methods=["PUT"])
@blp.arguments(FolderIn)
@blp.response(200, FolderOut)
@allow("admin")
def edit_folder(body, folder_id):
    return _folders().edit(caller(), folder_id, FolderForm(**body))


@blp.route("/folders/<int:folder_id>", methods=["DELETE"])
@blp.response(204)
@allow("admin")
def remove_folder(folder_id):
    _folders().remove(caller(), folder_id)


@blp.route("/folders/<int:folder_id>/grants", methods=["GET"])
@blp.response(200, GrantsIo)
@allow("admin")
def folder_grants(folder_id):
    """The users (ids) who may use the folder; admins may use every folder."""
    _folders().get(caller(), folder_id)
    return {"users": _folders().grants(folder_id)}


@blp.route("/folders/<int:folder_id>/grants", methods=["PUT"])
@blp.arguments(GrantsIo)
@blp.response(200, GrantsIo)
@allow("admin")
def set_folder_grants(body, folder_id):
    _folders().set_grants(caller(), folder_id, body["users"])
    return {"users": _folders().grants(folder_id)}


@blp.route("/folders/<int:folder_id>/browse", methods=["GET"])
@blp.arguments(BrowseArgs, location="query")
@blp.response(200)
@allow(*EVERYONE)
def browse_folder(args, folder_id):
    """One page of sub-folders and objects under ``path``, live from the store; pass ``next`` back as
    ``token`` for the following page."""
    return _folders().browse(caller(), folder_id, args["path"], token=args["token"], limit=args["limit"])


@blp.route("/worker-settings", methods=["GET"])
@blp.response(200, SettingsOut(many=True))
@allow("admin")
def list_worker_settings():
    return worker_settings.all_settings()


@blp.route("/worker-settings/<region>", methods=["PUT"])
@blp.arguments(SettingsIn)
@blp.response(200, SettingsOut)
@allow("admin")
def save_worker_settings(body, region):
    """VPC, subnet and head-node path for the workers of ``region``."""
    return worker_settings.save(caller(), region, **body)


@blp.route("/worker-settings/<region>", methods=["DELETE"])
@blp.response(204)
@allow("admin")
def remove_worker_settings(region):
    worker_settings.remove(caller(), region)
