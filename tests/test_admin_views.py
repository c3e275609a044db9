"""What admins watch: job logs (filtered, downloadable as CSV) and the workers
page (per region: state, last heartbeat, throughput), over real HTTP with a
real worker process copying on SeaweedFS."""
from __future__ import annotations

import csv
import io

from support.objects import put_objects
from support.waiting import wait_for
from support.web import add_user, admin_ready


def test_job_logs_and_workers_after_a_real_copy(web, seaweed, buckets, start_worker):
    served = web(start=True)
    node = served.app.extensions["cloudmover.node"]
    admin = admin_ready(served)
    put_objects(seaweed.client(), buckets[0], {f"in/{n}.bin": bytes([n]) * 5000 for n in range(30)})
    for name, bucket in (("Source", buckets[0]), ("Target", buckets[1])):
        added = admin.api("POST", "/folders", json={
            "name": name, "bucket": bucket, "region": seaweed.region, "endpoint_url": seaweed.endpoint_url,
            "access_type": "keys", "access_key_id": seaweed.access_key, "secret_access_key": seaweed.secret_key})
        assert added.status_code == 201, added.text
    job = admin.api("POST", "/jobs", json={"source": "folder:Source/in/", "destination": "folder:Target/out/"}).json()
    start_worker(node)
    done = wait_for(lambda: (found := admin.api("GET", f"/jobs/{job['id']}").json())["state"] == "complete" and found,
                    timeout=120, what="the job to complete")
    assert done["objects_done"] == 30
    assert done["usage"] is None   # local worker processes: no EC2 instance-hours to report

    lines = admin.api("GET", "/logs", params={"job": job["id"]}).json()
    assert lines and all(line["job"] == job["id"] for line in lines)
    assert any("job created" in line["message"] for line in lines)
    assert any(line["message"].startswith("job complete") for line in lines)
    only = admin.api("GET", "/logs", params={"job": job["id"], "contains": "job created"}).json()
    assert [line["message"].split(":")[0] for line in only] == ["job created"]
    assert admin.api("GET", "/logs", params={"level": "error", "job": job["id"]}).json() == []
    download = admin.api("GET", "/logs", params={"job": job["id"], "format": "csv"})
    assert download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["at", "job", "job name", "level", "message"] and len(rows) == len(lines) + 1

    # a heartbeat after the copy counts the worker's tasks and bytes
    workers = wait_for(lambda: [w for w in admin.api("GET", "/workers").json() if w["tasks_done"] >= 1] or None,
                       timeout=60, what="a heartbeat counting the copy")
    assert {w["region"] for w in workers} == {"us-east-1"}
    assert all(w["last_seen"] and w["state"] in ("idle", "busy") and w["bytes_done"] >= 30 * 5000 for w in workers)

    viewer = add_user(admin, served, "vera", "viewer")
    assert viewer.api("GET", "/logs").status_code == 403 and viewer.api("GET", "/workers").status_code == 403
    assert viewer.api("GET", f"/jobs/{job['id']}/log").status_code == 200   # a job's own log is for everyone
