"""Backup and restore (issue 3, acceptance 9).

A backup taken through the API while a job runs (a real head node, a worker
process, SeaweedFS buckets) restores into a fresh server: its users sign in,
its folder reaches its store with the credentials sealed before the backup,
and the job history is complete (row counts equal the manifest, plus the lines
the restore itself adds). A corrupt, foreign, truncated, newer or wrongly
encrypted backup is refused with its reason and the current database stays
byte-identical. The ``cloudmover backup``/``restore`` commands round-trip, and
``restore`` refuses while a server holds the data directory.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import requests

from conftest import ApiClient
from support.processes import stop_process
from support.objects import put_objects
from support.jobs import submit, wait_job
from support.waiting import wait_for

PASSPHRASE = "correct horse battery staple"
CLI = Path(sys.executable).with_name("cloudmover")
ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------
def fresh_app(data_dir: Path, **extra):
    from headnode.app import create_app
    return create_app({"DATA_DIR": str(data_dir), "TESTING": True, "TLS": False, "FLEET": "none",
                       "INSTANCE_METADATA_URL": "", **extra})


@pytest.fixture
def serve():
    """Factory: serve an app over real HTTP on a free port; returns (client, stop)."""
    from werkzeug.serving import make_server
    servers = []

    def start(app) -> tuple[ApiClient, callable]:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)

        def stop():
            if server in servers:
                servers.remove(server)
                server.shutdown()
                thread.join(10)
        return ApiClient(f"http://127.0.0.1:{server.port}/api/v1", app.config["API_TOKEN"]), stop

    yield start
    for server in servers:
        server.shutdown()









def history() -> dict:
    """The head node's history as the bound database holds it."""
    from headnode.models import AuditEvent, Job, JobLog, ObjectFailure, User
    return {"jobs": {j.id: (j.name, j.state, j.objects_total, j.objects_done, j.objects_failed, j.bytes_done)
                     for j in Job.select()},
            "logs": [(line.job_id, line.level, line.message) for line in JobLog.select().order_by(JobLog.id)],
            "failures": [(f.job_id, f.key, f.reason, f.kind) for f in ObjectFailure.select().order_by(ObjectFailure.id)],
            "audit": [(e.actor, e.action, e.target) for e in AuditEvent.select().order_by(AuditEvent.id)],
            "users": sorted((u.username, u.role, u.email) for u in User.select())}


def table_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%'")]
        return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}


def database_bytes(data_dir: Path) -> dict[str, bytes]:
    return {name: (data_dir / name).read_bytes()
            for name in ("cloudmover.db", "cloudmover.db-wal", "secret.key") if (data_dir / name).exists()}


# -- the whole story -------------------------------------------------------------------------------
def test_a_backup_taken_while_a_job_runs_restores_into_a_fresh_server(head_node, api, serve, start_worker,
                                                                       buckets, s3_env, tmp_path):
    from headnode.accounts import AccountService, NewUser
    from headnode.folders import FolderForm, FolderService
    from headnode.models import Task, User
    from pipeline.credentials import Sealer

    source, dest = buckets
    client = s3_env.client()
    objects = {f"shots/{n:03d}.dpx": bytes([n]) * (1000 + n) for n in range(12)}
    put_objects(client, source, objects)
    node = head_node(FLEET="none")
    rest = api(node)

    accounts = AccountService(node.config)
    initial = accounts.ensure_initial_admin()
    admin = accounts.change_password(User.get(User.username == "admin"), current=initial,
                                     new="Harbour lights 1987 at dusk")
    wendy, _ = accounts.add_many(admin, [NewUser("wendy", "wendy-initial-pass", "wrangler", "wendy@example.com"),
                                         NewUser("vic", "vic-initial-passw", "viewer")])
    folders = FolderService(node.config, Sealer(node.config["SECRET_KEY"]))
    folder = folders.add(admin, FolderForm(
        name="Dailies", bucket=source, region=s3_env.region, access_type="keys", prefix="shots",
        endpoint_url=s3_env.endpoint_url, access_key_id=s3_env.access_key, secret_access_key=s3_env.secret_key))
    folders.set_grants(admin, folder.id, [wendy.id])

    # history: a job that finished with one failed object (deleted after planning, before copying)
    first = submit(rest, f"s3://{source}/shots/", f"s3://{dest}/first/", s3_env.endpoint_url, name="first")
    wait_job(rest, first["id"], states=("running",), timeout=60)
    client.delete_object(Bucket=source, Key="shots/007.dpx")
    worker = start_worker(node)
    done = wait_job(rest, first["id"])
    assert done["state"] == "complete_with_warnings" and done["objects_failed"] == 1, done
    stop_process(worker)
    client.put_object(Bucket=source, Key="shots/007.dpx", Body=objects["shots/007.dpx"])

    # a job still running when the backup is taken: its tasks wait in the queue, no worker drains it
    second = submit(rest, f"s3://{source}/shots/", f"s3://{dest}/second/", s3_env.endpoint_url, name="second")
    running = wait_for(lambda: (job := rest.get(f"/jobs/{second['id']}").json())["planning_done"] and job,
                       timeout=60, what="the second job to be planned")
    assert running["state"] == "running" and running["objects_total"] == len(objects)
    response = rest.post("/backup", json={"passphrase": PASSPHRASE})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Disposition"].startswith("attachment; filename=cloudmover-backup-")
    assert rest.get(f"/jobs/{second['id']}").json()["state"] == "running"   # the server carried on
    backup_file = tmp_path / "taken-while-running.cmbackup"
    backup_file.write_bytes(response.content)
    assert node.config["SECRET_KEY"].encode() not in response.content   # encrypted, secret key included
    assert s3_env.secret_key.encode() not in response.content

    # the running server refuses to restore over its own unfinished job, and changes nothing
    refused = rest.post("/restore", files={"backup": ("b.cmbackup", response.content)},
                        data={"passphrase": PASSPHRASE})
    assert refused.status_code == 409 and "unfinished" in refused.json()["message"], refused.text
    before = history()
    assert ("operator", "backup_downloaded", None) in before["audit"]
    node.stop()   # one process binds one database at a time: the old server goes before the new one comes

    # a fresh server, with a secret key of its own and its own first admin
    fresh_dir = tmp_path / "fresh"
    fresh = fresh_app(fresh_dir)
    fresh_initial = fresh.extensions["cloudmover.accounts"].ensure_initial_admin()
    fresh_secret = fresh.config["SECRET_KEY"]
    assert fresh_secret != node.config["SECRET_KEY"]
    rest_b, stop_b = serve(fresh)
    staged = rest_b.post("/restore", files={"backup": (backup_file.name, backup_file.read_bytes())},
                         data={"passphrase": PASSPHRASE})
    assert staged.status_code == 202, staged.text
    assert "Restart the CloudMover server" in staged.json()["message"]
    manifest = staged.json()["staged"]["manifest"]
    assert manifest["schema_version"] == 1 and manifest["tables"]["job"] == 2 and manifest["tables"]["user"] == 3
    assert rest_b.get("/restore").json()["staged"]["manifest"] == manifest
    assert fresh.extensions["cloudmover.accounts"].authenticate("admin", fresh_initial)   # not applied yet
    stop_b()
    fresh.extensions["cloudmover.node"].stop()

    restarted = fresh_app(fresh_dir)   # the restart applies the staged restore
    assert restarted.config["SECRET_KEY"] == node.config["SECRET_KEY"]
    assert stat.S_IMODE((fresh_dir / "secret.key").stat().st_mode) == 0o600
    kept_secret = list(fresh_dir.glob("secret.key.before-restore-*"))
    assert len(kept_secret) == 1 and kept_secret[0].read_text().strip() == fresh_secret
    assert not (fresh_dir / "restore-pending").exists() and not (fresh_dir / "initial-admin-password").exists()

    # the history is complete: what the old server had, plus the lines the restore adds
    after = history()
    assert after["users"] == before["users"] and after["failures"] == before["failures"]
    assert [f[1] for f in after["failures"]] == ["shots/007.dpx"]
    assert after["jobs"][first["id"]] == before["jobs"][first["id"]]
    assert after["jobs"][second["id"]][1] == "failed"
    interrupted = [line for line in after["logs"] if line not in before["logs"]]
    assert after["logs"][:len(before["logs"])] == before["logs"]
    assert len(interrupted) == 1 and interrupted[0][0] == second["id"] and "interrupted" in interrupted[0][2]
    # the audit log up to the backup (the download is recorded after its snapshot), then the restore
    assert after["audit"][:-1] == before["audit"][:-1] and before["audit"][-1][1] == "backup_downloaded"
    assert after["audit"][-1] == ("operator", "backup_restored", backup_file.name)
    assert not Task.select().where((Task.job == second["id"]) & Task.state.in_(("pending", "queued"))).exists()
    counts = table_counts(fresh_dir / "cloudmover.db")
    added = {"joblog": 1, "auditevent": 1}
    assert {t: n for t, n in counts.items() if t in manifest["tables"]} == {
        t: n + added.get(t, 0) for t, n in manifest["tables"].items()}

    # users sign in with their passwords; the fresh server's first admin is gone
    from headnode.accesserrors import SignInFailed
    accounts_c = restarted.extensions["cloudmover.accounts"]
    assert accounts_c.authenticate("admin", "Harbour lights 1987 at dusk").role == "admin"
    assert accounts_c.authenticate("wendy", "wendy-initial-pass").role == "wrangler"
    assert accounts_c.authenticate("vic", "vic-initial-passw").role == "viewer"
    with pytest.raises(SignInFailed):
        accounts_c.authenticate("admin", fresh_initial)

    # the folder reaches its store with the access key pair sealed before the backup
    wendy_c = User.get(User.username == "wendy")
    listing = restarted.extensions["cloudmover.folders"].browse(wendy_c, folder.id)
    assert sorted(o["key"] for o in listing["objects"]) == sorted(k[len("shots/"):] for k in objects)

    # the job's detail through the restored server's API
    rest_c, _ = serve(restarted)
    job = rest_c.get(f"/jobs/{second['id']}").json()
    assert job["state"] == "failed" and job["error"].startswith("interrupted")
    log = rest_c.get(f"/jobs/{first['id']}/log").json()
    assert len(log) == sum(1 for line in before["logs"] if line[0] == first["id"])
    # the database it replaced is kept beside it
    kept = list(fresh_dir.glob("cloudmover.db.before-restore-*"))
    assert len(kept) == 1
    with sqlite3.connect(kept[0]) as conn:
        assert conn.execute("SELECT count(*) FROM user").fetchone()[0] == 1
        actions = [row[0] for row in conn.execute("SELECT action FROM auditevent ORDER BY id")]
        assert actions[-2:] == ["restore_staged", "signin"]
    restarted.extensions["cloudmover.node"].stop()


# -- refused backups change nothing ----------------------------------------------------------------
def _members(plain: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive}


def _repack(members: dict[str, bytes], tmp_path: Path, *, passphrase: str | None = None) -> bytes:
    from headnode import backupfile
    files = {}
    for name, data in members.items():
        files[name] = tmp_path / f"member-{len(files)}"
        files[name].write_bytes(data)
    plain = tmp_path / "repacked.tar.gz"
    backupfile.pack(files, plain)
    if passphrase is None:
        return plain.read_bytes()
    sealed = tmp_path / "repacked.cmbackup"
    backupfile.encrypt(plain, sealed, passphrase)
    return sealed.read_bytes()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:]


def _edited_database(members: dict[str, bytes], tmp_path: Path, edit, *, fix_checksum: bool) -> dict[str, bytes]:
    import hashlib
    path = tmp_path / "edited.db"
    path.write_bytes(members["cloudmover.db"])
    edit(path)
    edited = dict(members, **{"cloudmover.db": path.read_bytes()})
    if fix_checksum:
        manifest = json.loads(members["manifest.json"])
        manifest["database"]["sha256"] = hashlib.sha256(edited["cloudmover.db"]).hexdigest()
        edited["manifest.json"] = json.dumps(manifest).encode()
    return edited


def _rename_user(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE user SET username = 'mallory'")


def _break_a_page(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'user'").fetchone()[0]
    data = bytearray(path.read_bytes())
    data[(root - 1) * page] = 0x77   # not a b-tree page type
    path.write_bytes(bytes(data))


def _foreign_database(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")


def _newer_schema(members: dict[str, bytes]) -> dict[str, bytes]:
    manifest = json.loads(members["manifest.json"])
    manifest["schema_version"] += 1
    return dict(members, **{"manifest.json": json.dumps(manifest).encode()})


def _corrupt(kind: str, sealed: bytes, plain: bytes, tmp_path: Path) -> tuple[bytes, str | None]:
    """A refused backup of ``kind`` and the passphrase sent with it."""
    members = _members(plain)
    if kind == "flipped byte":
        return _flip(sealed, len(sealed) * 2 // 3), PASSPHRASE
    if kind == "flipped byte, unencrypted":
        return _flip(plain, len(plain) // 2), None
    if kind == "truncated":
        return sealed[:len(sealed) * 2 // 3], PASSPHRASE
    if kind == "truncated, unencrypted":
        return plain[:len(plain) // 2], None
    if kind == "random bytes":
        return random.Random(3).randbytes(20_000), PASSPHRASE
    if kind == "empty file":
        return b"", None
    if kind == "wrong passphrase":
        return sealed, "correct horse battery stapler"
    if kind == "no passphrase":
        return sealed, None
    if kind == "newer schema":
        return _repack(_newer_schema(members), tmp_path, passphrase=PASSPHRASE), PASSPHRASE
    if kind == "database altered":
        return _repack(_edited_database(members, tmp_path, _rename_user, fix_checksum=False), tmp_path), None
    if kind == "database damaged":
        return _repack(_edited_database(members, tmp_path, _break_a_page, fix_checksum=True), tmp_path), None
    if kind == "not a CloudMover database":
        return _repack(_edited_database(members, tmp_path, _foreign_database, fix_checksum=True), tmp_path), None
    if kind == "foreign archive":
        return _repack({"notes.txt": b"hello"}, tmp_path), None
    if kind == "missing secret key":
        return _repack({k: v for k, v in members.items() if k != "secret.key"}, tmp_path), None
    raise ValueError(kind)


REFUSALS = {
    "flipped byte": "damaged or truncated",
    "flipped byte, unencrypted": "damaged or truncated",
    "truncated": "damaged or truncated",
    "truncated, unencrypted": "damaged or truncated",
    "random bytes": "This is not a CloudMover backup file",
    "empty file": "This is not a CloudMover backup file",
    "wrong passphrase": "The passphrase is wrong",
    "no passphrase": "This backup is encrypted: give the passphrase",
    "newer schema": "This backup was made by a newer CloudMover (schema 2; this server has schema 1): upgrade first",
    "database altered": "does not match the checksum",
    "database damaged": "The database in the backup is damaged",
    "not a CloudMover database": "it lacks the table(s)",
    "foreign archive": "This is not a CloudMover backup: it holds 'notes.txt'",
    "missing secret key": "it lacks secret.key",
}


@pytest.fixture
def victim(tmp_path, serve):
    """A served fresh server, an encrypted backup downloaded from it, and the same unencrypted."""
    from headnode import backup
    app = fresh_app(tmp_path / "victim")
    app.extensions["cloudmover.accounts"].ensure_initial_admin()
    rest, stop = serve(app)
    sealed = rest.post("/backup", json={"passphrase": PASSPHRASE})
    assert sealed.status_code == 200, sealed.text
    plain = tmp_path / "plain.cmbackup"
    backup.create(app.extensions["cloudmover.node"].config, plain, passphrase=None)
    yield app, rest, sealed.content, plain.read_bytes()
    stop()
    app.extensions["cloudmover.node"].stop()


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_a_bad_backup_is_refused_with_its_reason_and_changes_nothing(kind, victim, tmp_path):
    app, rest, sealed, plain = victim
    data_dir = Path(app.extensions["cloudmover.node"].config["DATA_DIR"])
    bad, passphrase = _corrupt(kind, sealed, plain, tmp_path)
    before = database_bytes(data_dir)
    entries = sorted(p.name for p in data_dir.iterdir())

    answer = rest.post("/restore", files={"backup": ("bad.cmbackup", bad)},
                       data={"passphrase": passphrase} if passphrase else {})
    assert answer.status_code == 400, answer.text
    assert REFUSALS[kind] in answer.json()["message"], answer.json()
    assert answer.json()["code"] == "bad_backup"
    assert database_bytes(data_dir) == before
    assert sorted(p.name for p in data_dir.iterdir()) == entries   # nothing staged, no scratch left
    assert rest.get("/restore").json()["staged"] is None


def test_a_backup_is_not_made_without_a_real_passphrase_nor_by_other_roles(victim):
    from headnode.accounts import AccountService, NewUser
    from headnode.models import User
    app, rest, sealed, _ = victim
    short = rest.post("/backup", json={"passphrase": "short"})
    assert short.status_code == 400 and "at least 10 characters" in short.json()["message"]
    assert rest.post("/backup", json={}).status_code == 422
    accounts = AccountService(app.extensions["cloudmover.node"].config)
    admin = User.get(User.username == "admin")
    for name, role in (("wanda", "wrangler"), ("vera", "viewer")):
        user = accounts.add_many(admin, [NewUser(name, f"{name}-initial-pass", role)])[0]
        User.update(must_change_password=False).where(User.id == user.id).execute()
        other = ApiClient(rest.base, accounts.issue_token(admin, user.id))
        assert other.post("/backup", json={"passphrase": PASSPHRASE}).status_code == 403
        assert other.post("/restore", files={"backup": ("b", sealed)}, data={"passphrase": PASSPHRASE}
                          ).status_code == 403
        assert other.get("/restore").status_code == 403
        page = requests.get(rest.base.replace("/api/v1", "/admin/backup"), timeout=30,
                            headers=other.session.headers)
        assert page.status_code == 403
    page = rest.session.get(rest.base.replace("/api/v1", "/admin/backup"), timeout=30)
    assert page.status_code == 200 and "Download a backup" in page.text and "backup.js" in page.text
    manual = rest.session.get(rest.base.replace("/api/v1", "/help/backup"), timeout=30)
    assert manual.status_code == 200 and "as sensitive as the" in manual.text


def test_a_staged_restore_can_be_cancelled(victim):
    app, rest, sealed, _ = victim
    data_dir = Path(app.extensions["cloudmover.node"].config["DATA_DIR"])
    staged = rest.post("/restore", files={"backup": ("mine.cmbackup", sealed)}, data={"passphrase": PASSPHRASE})
    assert staged.status_code == 202, staged.text
    assert (data_dir / "restore-pending").is_dir()
    assert rest.delete("/restore").status_code == 204
    assert rest.get("/restore").json()["staged"] is None and not (data_dir / "restore-pending").exists()


def test_a_configured_secret_key_that_differs_is_refused(victim, tmp_path, serve):
    app, rest, sealed, _ = victim
    app.extensions["cloudmover.node"].stop()
    other = fresh_app(tmp_path / "other", SECRET_KEY="a-configured-secret-of-another-server")
    other_rest, stop = serve(other)
    data_dir = tmp_path / "other"
    before = database_bytes(data_dir)
    answer = other_rest.post("/restore", files={"backup": ("b.cmbackup", sealed)}, data={"passphrase": PASSPHRASE})
    assert answer.status_code == 400 and "SECRET_KEY is set in its configuration" in answer.json()["message"]
    assert database_bytes(data_dir) == before and not (data_dir / "restore-pending").exists()
    stop()
    other.extensions["cloudmover.node"].stop()


@pytest.mark.parametrize("size", [0, 4096, 5000])
def test_encrypted_parts_round_trip_and_cannot_be_cut_dropped_or_swapped(size, tmp_path):
    from headnode import backupfile
    from headnode.backupfile import BadBackup
    plain, sealed, out = tmp_path / "plain", tmp_path / "sealed", tmp_path / "out"
    plain.write_bytes(random.Random(size).randbytes(size))
    backupfile.encrypt(plain, sealed, PASSPHRASE, chunk_size=1024)
    backupfile.decrypt(sealed, out, PASSPHRASE)
    assert out.read_bytes() == plain.read_bytes()
    if size < 4096:
        return
    data, record = sealed.read_bytes(), 1024 + 16
    start = len(data) - (size // 1024) * record - (size % 1024 + 16 if size % 1024 else 0)
    parts = [data[start + n * record:start + (n + 1) * record] for n in range((len(data) - start + record - 1)
                                                                              // record)]
    broken = {"truncated": data[:start + 2 * record],
              "dropped": data[:start] + parts[0] + b"".join(parts[2:]),
              "swapped": data[:start] + parts[1] + parts[0] + b"".join(parts[2:])}
    messages = {"truncated": "The backup file is truncated: it ends before its last part",
                "dropped": "part 2 fails its integrity check", "swapped": "part 1 fails its integrity check"}
    for how, bad in broken.items():
        sealed.write_bytes(bad)
        with pytest.raises(BadBackup, match=messages[how]):
            backupfile.decrypt(sealed, out, PASSPHRASE)


# -- the command line ------------------------------------------------------------------------------
def cloudmover(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDMOVER_")}
    return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_backup_and_restore_round_trip(tmp_path):
    from headnode.accesserrors import SignInFailed
    from headnode.accounts import NewUser
    from headnode.models import User

    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    app = fresh_app(source_dir)
    accounts = app.extensions["cloudmover.accounts"]
    initial = accounts.ensure_initial_admin()
    accounts.add_many(User.get(User.username == "admin"), [NewUser("carol", "carol-initial-pw", "wrangler")])
    passfile = tmp_path / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")

    sealed = tmp_path / "cli.cmbackup"   # online: the server still holds its data directory
    made = cloudmover("backup", str(sealed), "--data-dir", str(source_dir), "--passphrase-file", str(passfile))
    assert made.returncode == 0, made.stderr
    assert "encrypted with the passphrase" in made.stdout and "2 user(s)" in made.stdout
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    plain = tmp_path / "cli-plain.cmbackup"
    unencrypted = cloudmover("backup", str(plain), "--data-dir", str(source_dir))
    assert unencrypted.returncode == 0 and "NOT encrypted" in unencrypted.stdout
    assert "as safe as the server" in unencrypted.stderr
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    with tarfile.open(plain) as archive:   # an ordinary .tar.gz
        assert sorted(archive.getnames()) == ["cloudmover.db", "manifest.json", "secret.key"]
    source_secret = app.config["SECRET_KEY"]
    app.extensions["cloudmover.node"].stop()

    # refused while a server holds the target: nothing changes
    holder = fresh_app(target_dir)
    holder.extensions["cloudmover.accounts"].ensure_initial_admin()
    before = database_bytes(target_dir)
    busy = cloudmover("restore", str(sealed), "--data-dir", str(target_dir), "--passphrase-file", str(passfile))
    assert busy.returncode == 1 and "A CloudMover server is running on" in busy.stderr
    assert database_bytes(target_dir) == before
    holder.extensions["cloudmover.node"].stop()
    before = database_bytes(target_dir)   # stopping folded the server's log into its database

    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    refused = cloudmover("restore", str(sealed), "--data-dir", str(target_dir), "--passphrase-file", str(wrong))
    assert refused.returncode == 1 and "The passphrase is wrong" in refused.stderr
    assert database_bytes(target_dir) == before

    restored = cloudmover("restore", str(sealed), "--data-dir", str(target_dir), "--passphrase-file", str(passfile))
    assert restored.returncode == 0, restored.stderr
    assert "2 user(s)" in restored.stdout and "the previous database is kept as" in restored.stdout
    back = fresh_app(target_dir)
    assert back.config["SECRET_KEY"] == source_secret
    assert back.extensions["cloudmover.accounts"].authenticate("admin", initial).must_change_password
    with pytest.raises(SignInFailed):
        back.extensions["cloudmover.accounts"].authenticate("carol", "wrong password here")
    assert back.extensions["cloudmover.accounts"].authenticate("carol", "carol-initial-pw").role == "wrangler"
    back.extensions["cloudmover.node"].stop()

    # the unencrypted one restores too, into a data directory that does not exist yet
    again = cloudmover("restore", str(plain), "--data-dir", str(tmp_path / "new"))
    assert again.returncode == 0, again.stderr
    assert table_counts(tmp_path / "new" / "cloudmover.db")["user"] == 2


# -- the page, in a real headless browser ------------------------------------------------------------
def test_the_backup_page_downloads_a_backup_and_shows_why_a_restore_is_refused(tmp_path, serve):
    from playwright.sync_api import sync_playwright
    from headnode.models import User

    app = fresh_app(tmp_path / "ui")
    accounts = app.extensions["cloudmover.accounts"]
    initial = accounts.ensure_initial_admin()
    accounts.change_password(User.get(User.username == "admin"), current=initial, new="Harbour lights 1987 at dusk")
    rest, stop = serve(app)
    base = rest.base.replace("/api/v1", "")
    shots = ROOT / "test-artifacts" / "browser" / "backup"
    shots.mkdir(parents=True, exist_ok=True)
    garbage = tmp_path / "garbage.cmbackup"
    garbage.write_bytes(random.Random(11).randbytes(3000))

    with sync_playwright() as playwright:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        assert chromium, "Debian's chromium package is needed for the browser test (no test downloads a browser)"
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True).new_page()
        page.set_default_timeout(30_000)
        page.goto(base + "/signin")
        page.fill("#username", "admin")
        page.fill("#password", "Harbour lights 1987 at dusk")
        page.click("#signin-button")
        page.wait_for_url(base + "/")
        page.goto(base + "/admin/backup")
        page.fill("#backup-passphrase", PASSPHRASE)
        page.fill("#backup-passphrase-again", PASSPHRASE)
        with page.expect_download() as download:
            page.click("#backup-download")
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        page.locator("#notice", has_text="Backup downloaded as").wait_for()
        page.screenshot(path=str(shots / "01-downloaded.png"), full_page=True)
        assert saved.name.startswith("cloudmover-backup-") and saved.read_bytes().startswith(b"CMBACKUP")

        for upload, passphrase, reason, shot in (
                (garbage, "", "This is not a CloudMover backup file", "02-foreign-file-refused"),
                (saved, "not the passphrase", "The passphrase is wrong", "03-wrong-passphrase-refused")):
            page.set_input_files("#restore-file", str(upload))
            page.fill("#restore-passphrase", passphrase)
            page.click("#restore-upload")
            page.locator("#notice.error", has_text=reason).wait_for()
            page.screenshot(path=str(shots / f"{shot}.png"), full_page=True)
            assert page.locator("#restore-staged").is_hidden()

        page.set_input_files("#restore-file", str(saved))
        page.fill("#restore-passphrase", PASSPHRASE)
        page.click("#restore-upload")
        page.locator("#notice.ok", has_text="Restart the CloudMover server").wait_for()
        page.locator("#restore-staged-text", has_text="It is restored when the server restarts").wait_for()
        page.screenshot(path=str(shots / "04-restore-staged.png"), full_page=True)
        page.click("#restore-cancel")
        page.locator("#notice", has_text="The staged restore is cancelled").wait_for()
        assert page.locator("#restore-staged").is_hidden()
        browser.close()
    assert rest.get("/restore").json()["staged"] is None
    stop()
    app.extensions["cloudmover.node"].stop()
