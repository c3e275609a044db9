"""Folders: the S3 buckets (or prefixes of them) users copy from and to.

A folder is saved only after the store accepted its credentials, confirmed
the bucket exists in the region chosen, and let us list it; otherwise the
store's reason is given back and nothing is saved. Secret keys and session
tokens are sealed (encrypted and authenticated with the node's secret) before
they reach the database and are never returned: editing a folder without new
secrets keeps the old ones. Admins grant folders to users; everyone else sees
and uses only the folders granted to them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline import errors
from pipeline.credentials import Credentials, Sealer
from pipeline.locations import endpoint_problem
from pipeline.retrying import RetryPolicy
from pipeline.s3store import S3Store
from pipeline.store import StoreSpec
from headnode import audit
from headnode.accesserrors import Forbidden, Refused
from headnode.models import Folder, FolderGrant, User, db

ACCESS_TYPES = {"role": "The head node's IAM role", "keys": "Access key pair",
                "temporary": "Temporary credentials (key pair and session token)"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
BROWSE_PAGE = 1000
# a form waits for the answer: a store that does not answer is reported, not retried for a minute
CHECK_POLICY = RetryPolicy(attempts=2, max_delay=1.0)


@lru_cache(maxsize=1)
def s3_regions() -> tuple[str, ...]:
    """Every S3 region botocore knows, for the region drop-down."""
    import boto3
    session = boto3.session.Session()
    found = set()
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        found.update(session.get_available_regions("s3", partition_name=partition))
    return tuple(sorted(found))


@dataclass(frozen=True)
class FolderForm:
    name: str
    bucket: str
    region: str
    access_type: str = "role"
    prefix: str = ""
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None    # blank when editing: keep the stored one
    session_token: str | None = None


class FolderService:
    def __init__(self, config: dict, sealer: Sealer):
        self.config, self.sealer = config, sealer

    # -- reading -------------------------------------------------------------------
    def visible(self, user) -> list[Folder]:
        query = Folder.select().order_by(Folder.name)
        if user.role != "admin":
            query = query.join(FolderGrant).where(FolderGrant.user == user.id)
        return list(query)

    def get(self, user, folder_id: int) -> Folder:
        folder = Folder.get_or_none(Folder.id == folder_id)
        if folder is None:
            from headnode.jobs import NotFound
            raise NotFound(f"no folder {folder_id}")
        self._require_grant(user, folder)
        return folder

    def grants(self, folder_id: int) -> list[int]:
        return [g.user_id for g in FolderGrant.select().where(FolderGrant.folder == folder_id)]

    def browse(self, user, folder_id: int, path: str = "", *, token: str | None = None,
               limit: int = BROWSE_PAGE) -> dict:
        """One page of sub-folders and objects under ``path`` in the folder, live from the store."""
        folder = self.get(user, folder_id)
        path = path.lstrip("/")
        if path and not path.endswith("/"):
            path += "/"
        base = _directory(folder.prefix)
        store = S3Store(self.spec(folder))
        try:
            prefixes, objects, next_token = store.browse(base + path, token=token, limit=limit)
        finally:
            store.close()
        return {"folder": folder.id, "path": path, "next": next_token,
                "folders": [p[len(base):] for p in prefixes],
                "objects": [{"key": o.key[len(base):], "size": o.size} for o in objects]}

    # -- using ----------------------------------------------------------------------------
    def spec(self, folder: Folder) -> StoreSpec:
        return StoreSpec("s3", folder.bucket, folder.region, folder.endpoint_url, self._credentials(folder))

    def job_folders(self, user) -> dict:
        """The folders ``user`` may name in a job (``folder:NAME/path``), credentials opened."""
        found = {}
        for folder in self.visible(user):
            creds = self._credentials(folder)
            found[folder.name] = {"bucket": folder.bucket, "prefix": folder.prefix, "region": folder.region,
                                  "endpoint_url": folder.endpoint_url,
                                  "access_key_id": creds.access_key_id if creds else None,
                                  "secret_access_key": creds.secret_access_key if creds else None,
                                  "session_token": creds.session_token if creds else None}
        return found

    def _credentials(self, folder: Folder) -> Credentials | None:
        if folder.access_type == "role":
            return None
        return self.sealer.unseal(folder.sealed_secret)

    # -- changing (admins) ------------------------------------------------------------------
    def add(self, actor, form: FolderForm) -> Folder:
        fields = self._validated(form, existing=None)
        with db.atomic():
            if Folder.select().where(Folder.name == form.name).exists():
                raise Refused(f"A folder named {form.name!r} already exists.")
            folder = Folder.create(**fields)
        audit.record(actor.username, "folder_added", folder.name,
                     f"s3://{folder.bucket}/{folder.prefix} in {folder.region}, access: {folder.access_type}")
        return folder

    def edit(self, actor, folder_id: int, form: FolderForm) -> Folder:
        folder = self.get(actor, folder_id)
        fields = self._validated(form, existing=folder)
        with db.atomic():
            if Folder.select().where((Folder.name == form.name) & (Folder.id != folder.id)).exists():
                raise Refused(f"A folder named {form.name!r} already exists.")
            Folder.update(**fields).where(Folder.id == folder.id).execute()
        audit.record(actor.username, "folder_changed", form.name,
                     f"s3://{fields['bucket']}/{fields['prefix']} in {fields['region']}, "
                     f"access: {fields['access_type']}")
        return Folder.get_by_id(folder.id)

    def remove(self, actor, folder_id: int) -> None:
        folder = self.get(actor, folder_id)
        folder.delete_instance(recursive=True)
        audit.record(actor.username, "folder_removed", folder.name)

    def set_grants(self, actor, folder_id: int, user_ids: list[int]) -> None:
        folder = self.get(actor, folder_id)
        users = list(User.select().where(User.id.in_(user_ids or [0])))
        if len(users) != len(set(user_ids)):
            raise Refused("Some of the chosen users do not exist.")
        with db.atomic():
            FolderGrant.delete().where(FolderGrant.folder == folder.id).execute()
            for user in users:
                FolderGrant.create(folder=folder, user=user)
        audit.record(actor.username, "folder_access_changed", folder.name,
                     "granted to: " + (", ".join(sorted(u.username for u in users)) or "nobody"))

    # -- rules ---------------------------------------------------------------------------------
    @staticmethod
    def _require_grant(user, folder: Folder) -> None:
        if user.role == "admin":
            return
        if not FolderGrant.select().where((FolderGrant.folder == folder.id)
                                          & (FolderGrant.user == user.id)).exists():
            raise Forbidden(f"You have no access to folder {folder.name!r}.")

    def _validated(self, form: FolderForm, *, existing: Folder | None) -> dict:
        name, bucket = (form.name or "").strip(), (form.bucket or "").strip()
        if not NAME.match(name):
            raise Refused("Give the folder a display name: up to 100 letters, digits, spaces, '.', '_' or '-'.")
        if not BUCKET.match(bucket):
            raise Refused(f"{bucket!r} is not a valid S3 bucket name.")
        if form.region not in s3_regions():
            raise Refused(f"Choose an S3 region from the list ({form.region!r} is not one).")
        if form.access_type not in ACCESS_TYPES:
            raise Refused("Choose how the head node reaches the bucket: IAM role, access key pair or "
                          "temporary credentials.")
        endpoint = (form.endpoint_url or "").strip() or None
        if endpoint and (problem := endpoint_problem(endpoint)):
            raise Refused(problem + ".")
        credentials = self._form_credentials(form, existing)
        spec = StoreSpec("s3", bucket, form.region, endpoint, credentials)
        _check_store(spec, (form.prefix or "").strip().lstrip("/"))
        return {"name": name, "bucket": bucket, "prefix": (form.prefix or "").strip().lstrip("/"),
                "region": form.region, "endpoint_url": endpoint, "access_type": form.access_type,
                "access_key_id": credentials.access_key_id if credentials else None,
                "sealed_secret": self.sealer.seal(credentials)}

    def _form_credentials(self, form: FolderForm, existing: Folder | None) -> Credentials | None:
        if form.access_type == "role":
            return None
        key_id = (form.access_key_id or "").strip()
        secret, token = form.secret_access_key or "", (form.session_token or "").strip() or None
        kept = self._credentials(existing) if existing and existing.access_type != "role" else None
        if not secret and kept and kept.access_key_id == key_id:
            secret = kept.secret_access_key   # left blank on edit: keep the stored secret
            if form.access_type == "temporary" and not token:
                token = kept.session_token
        if not key_id or not secret:
            raise Refused("An access key pair needs both the access key id and the secret access key.")
        if form.access_type == "temporary" and not token:
            raise Refused("Temporary credentials need a session token.")
        return Credentials(key_id, secret, token if form.access_type == "temporary" else None)


def _check_store(spec: StoreSpec, prefix: str) -> None:
    """Refuse with the store's reason unless it accepts the credentials, the bucket exists in
    ``spec.region`` and may be listed."""
    store = S3Store(spec, policy=CHECK_POLICY)
    try:
        region = store.bucket_region()
        if region is not None and region != spec.region:
            raise Refused(f"The store says bucket {spec.bucket!r} is in region {region}, not {spec.region}. "
                          f"Choose {region}.")
        store.browse(_directory(prefix), limit=1)
    except errors.PipelineError as exc:
        if isinstance(exc, Refused):
            raise
        raise Refused(f"The store refused this folder: {exc}") from None
    finally:
        store.close()


def _directory(prefix: str) -> str:
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"
