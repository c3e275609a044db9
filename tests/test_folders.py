"""Folders over real HTTP against real S3 servers: validation with the store's
reason, secrets that never come back out, and who may see and use what."""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from support.objects import put_objects
from support.web import add_user, admin_ready


def seaweed_folder(seaweed, name, bucket, **changes):
    body = {"name": name, "bucket": bucket, "region": seaweed.region, "endpoint_url": seaweed.endpoint_url,
            "access_type": "keys", "access_key_id": seaweed.access_key, "secret_access_key": seaweed.secret_key}
    body.update(changes)
    return body


@pytest.fixture
def admin_and_app(web, seaweed):
    served = web()
    return admin_ready(served), served


def assert_no_folders(admin):
    assert admin.api("GET", "/folders").json() == []


def test_a_wrong_secret_key_is_refused_with_the_stores_reason(admin_and_app, seaweed, buckets):
    admin, _ = admin_and_app
    refused = admin.api("POST", "/folders", json=seaweed_folder(seaweed, "Source", buckets[0],
                                                                secret_access_key="not-the-secret"))
    assert refused.status_code == 400
    message = refused.json()["message"]
    assert message.startswith("The store refused this folder:") and "SignatureDoesNotMatch" in message
    assert_no_folders(admin)


def test_a_missing_bucket_is_refused_with_the_stores_reason(admin_and_app, seaweed):
    admin, _ = admin_and_app
    refused = admin.api("POST", "/folders", json=seaweed_folder(seaweed, "Nowhere", f"missing-{uuid.uuid4().hex[:8]}"))
    assert refused.status_code == 400 and "the bucket does not exist" in refused.json()["message"]
    assert_no_folders(admin)


def test_a_wrong_region_is_refused_with_the_stores_reason(web, moto):
    served = web()
    admin = admin_ready(served)
    bucket = f"west-{uuid.uuid4().hex[:8]}"
    moto.client("s3", region_name="us-west-2").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    body = {"name": "West", "bucket": bucket, "region": "eu-west-1", "endpoint_url": moto.endpoint_url,
            "access_type": "keys", "access_key_id": "testing", "secret_access_key": "testing"}
    refused = admin.api("POST", "/folders", json=body)
    assert refused.status_code == 400
    assert refused.json()["message"] == (f"The store says bucket '{bucket}' is in region us-west-2, not eu-west-1. "
                                         "Choose us-west-2.")
    assert_no_folders(admin)
    assert admin.api("POST", "/folders", json={**body, "region": "us-west-2"}).status_code == 201


def test_form_mistakes_are_refused_before_asking_the_store(admin_and_app, seaweed, buckets):
    admin, _ = admin_and_app
    cases = [({"region": "moon-1"}, "Choose an S3 region"), ({"bucket": "Bad_Bucket"}, "not a valid S3 bucket name"),
             ({"secret_access_key": None}, "needs both the access key id and the secret"),
             ({"access_type": "temporary"}, "need a session token")]
    for change, expected in cases:
        refused = admin.api("POST", "/folders", json={**seaweed_folder(seaweed, "F", buckets[0]), **change})
        assert refused.status_code in (400, 422) and expected in refused.text, change
    assert_no_folders(admin)


def test_secrets_are_encrypted_at_rest_and_never_shown(web, moto, caplog):
    caplog.set_level(logging.DEBUG)
    served = web()
    admin = admin_ready(served)
    bucket = f"tmp-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    secret, token = f"SECRET{uuid.uuid4().hex}", f"TOKEN{uuid.uuid4().hex}"
    body = {"name": "Temporary", "bucket": bucket, "region": "us-east-1", "endpoint_url": moto.endpoint_url,
            "access_type": "temporary", "access_key_id": "ASIATESTKEY", "secret_access_key": secret,
            "session_token": token}
    created = admin.api("POST", "/folders", json=body)
    assert created.status_code == 201 and created.json()["has_secret"] is True
    folder_id = created.json()["id"]
    # editing without secrets keeps them: the folder still reaches its store
    edited = admin.api("PUT", f"/folders/{folder_id}", json={**body, "name": "Temp", "secret_access_key": None,
                                                               "session_token": None})
    assert edited.status_code == 200, edited.text
    assert admin.api("GET", f"/folders/{folder_id}/browse").status_code == 200
    seen = [created.text, edited.text]
    for path in ("/folders", f"/folders/{folder_id}", "/audit", "/logs", "/openapi.json"):
        seen.append(admin.api("GET", path).text)
    for page in ("/", "/admin/folders", "/jobs/new", "/admin/audit"):
        seen.append(admin.page(page).text)
    seen.extend(record.getMessage() for record in caplog.records)
    data_dir = Path(served.app.extensions["cloudmover.node"].config["DATA_DIR"])
    stored = b"".join(p.read_bytes() for p in data_dir.iterdir() if p.name.startswith("cloudmover.db"))
    for value in (secret, token):
        assert value.encode() not in stored
        assert not [text for text in seen if value in text]


def test_users_see_and_use_only_the_folders_granted_to_them(web, seaweed, buckets):
    served = web(start=True)
    admin = admin_ready(served)
    put_objects(seaweed.client(), buckets[0], {"shots/a.dpx": b"a" * 10, "shots/b.dpx": b"b" * 20})
    source = admin.api("POST", "/folders", json=seaweed_folder(seaweed, "Source", buckets[0])).json()
    target = admin.api("POST", "/folders", json=seaweed_folder(seaweed, "Target", buckets[1])).json()
    wendy = add_user(admin, served, "wendy", "wrangler")
    wendy_id = wendy.api("GET", "/me").json()["id"]
    assert wendy.api("GET", "/folders").json() == []
    assert wendy.api("GET", f"/folders/{source['id']}/browse").status_code == 403
    job = {"source": "folder:Source/shots/", "destination": "folder:Target/copy/"}
    refused = wendy.api("POST", "/jobs", json=job)
    assert refused.status_code == 400 and "no folder named 'Source'" in refused.json()["message"]
    assert admin.api("PUT", f"/folders/{source['id']}/grants", json={"users": [wendy_id]}).status_code == 200
    assert [f["name"] for f in wendy.api("GET", "/folders").json()] == ["Source"]
    listing = wendy.api("GET", f"/folders/{source['id']}/browse").json()
    assert listing["folders"] == ["shots/"] and listing["objects"] == []
    refused = wendy.api("POST", "/jobs", json=job)   # still no access to the target
    assert refused.status_code == 400 and "no folder named 'Target'" in refused.json()["message"]
    raw = wendy.api("POST", "/jobs", json={"source": f"s3://{buckets[0]}/shots/", "destination": "folder:Source/x/"})
    assert raw.status_code == 403 and "name a folder granted to you" in raw.json()["message"]
    admin.api("PUT", f"/folders/{target['id']}/grants", json={"users": [wendy_id]})
    created = wendy.api("POST", "/jobs", json=job)
    assert created.status_code == 201, created.text
    assert created.json()["submitted_by"] == "wendy"


def test_browsing_a_huge_prefix_comes_in_pages(admin_and_app, seaweed, buckets):
    admin, _ = admin_and_app
    put_objects(seaweed.client(), buckets[0], {f"big/part-{n:03d}/x": b"x" for n in range(25)})
    folder = admin.api("POST", "/folders", json=seaweed_folder(seaweed, "Big", buckets[0])).json()
    seen, token = [], None
    while True:
        query = {"path": "big/", "limit": 10, **({"token": token} if token else {})}
        page = admin.api("GET", f"/folders/{folder['id']}/browse", params=query).json()
        assert len(page["folders"]) <= 10
        seen += page["folders"]
        token = page["next"]
        if not token:
            break
    assert seen == [f"big/part-{n:03d}/" for n in range(25)]
