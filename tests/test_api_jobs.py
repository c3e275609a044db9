"""Jobs through the REST API: a copy run by three worker processes over either
bus, and the list / get / cancel / retry endpoints, authentication, missing
jobs and the OpenAPI document."""
from __future__ import annotations
from concurrent.futures import ThreadPoolExecutor

import os
import psutil
import pytest

from conftest import bus_config
from support.objects import MiB, assert_same_objects, put_objects, small_and_large
from support.jobs import submit, wait_job
from support.waiting import wait_for

REGION = "us-east-1"
SMALL_PARTS = {"MULTIPART_THRESHOLD": 5 * MiB, "PART_SIZE": 5 * MiB}





def heartbeat_pids(region: str) -> set[int]:
    """Pids of the workers that reported a heartbeat for ``region`` (worker id: host-pid-nonce)."""
    from headnode.models import WorkerState
    return {int(w.worker_id.rsplit("-", 2)[1]) for w in WorkerState.select().where(WorkerState.region == region)}


@pytest.mark.parametrize("bus", ["sqlite", "sqs"])
def test_copy_job_through_the_api_with_three_worker_processes(bus, head_node, api, buckets, s3_env, tmp_path,
                                                               request):
    moto = request.getfixturevalue("moto") if bus == "sqs" else None
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(7, small=300, large=(6 * MiB + 1, 11 * MiB - 3))
    put_objects(client, source, objects)
    node = head_node(workers=3, **SMALL_PARTS, **bus_config(bus, tmp_path, moto))
    rest = api(node)

    created = submit(rest, f"s3://{source}/", f"s3://{dest}/copy/", s3_env.endpoint_url)
    assert created["state"] == "queued" and created["region"] == REGION

    pids = wait_for(lambda: len(node.fleet.pids(REGION)) == 3 and node.fleet.pids(REGION), timeout=60,
                    what="three worker processes")
    for pid in pids:
        assert "worker.main" in " ".join(psutil.Process(pid).cmdline())
    job = wait_job(rest, created["id"])
    assert job["state"] == "complete", job
    total = sum(len(body) for body in objects.values())
    assert (job["objects_total"], job["objects_done"], job["objects_failed"]) == (len(objects), len(objects), 0)
    assert job["bytes_total"] == job["bytes_done"] == total
    assert_same_objects(client, dest, objects, prefix="copy/")
    # the three processes the fleet started are the ones that drained the bus
    wait_for(lambda: set(pids) <= heartbeat_pids(REGION), timeout=30, what="a heartbeat from every worker")
    assert len(node.fleet.pids(REGION)) == 3


def test_local_workers_stop_once_their_region_is_idle(head_node, api, buckets, s3_env):
    source, dest = buckets
    put_objects(s3_env.client(), source, {"a": b"1"})
    node = head_node(workers=1, LOCAL_IDLE_SECONDS=2)
    rest = api(node)
    created = submit(rest, f"s3://{source}/", f"s3://{dest}/", s3_env.endpoint_url)
    worker = psutil.Process(wait_for(lambda: node.fleet.pids(REGION), timeout=30, what="the worker")[0])
    assert wait_job(rest, created["id"])["state"] == "complete"
    wait_for(lambda: not node.fleet.pids(REGION), timeout=60, what="the idle worker to be retired")
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


# -- the other endpoints, on a head node whose workers are started by hand -----------
@pytest.fixture
def idle_node(head_node, api):
    """A head node without a fleet (workers are started elsewhere) and its API client."""
    node = head_node(FLEET="none")
    return node, api(node)




def test_get_and_list_jobs(idle_node, buckets, s3_env):
    node, rest = idle_node
    source, dest = buckets
    put_objects(s3_env.client(), source, {"a": b"1", "b": b"22"})
    first = submit(rest, f"s3://{source}/", f"s3://{dest}/one/", s3_env.endpoint_url, name="first")
    second = submit(rest, f"s3://{source}/", f"s3://{dest}/two/", s3_env.endpoint_url)
    rest.post(f"/jobs/{first['id']}/cancel").raise_for_status()

    got = rest.get(f"/jobs/{second['id']}").json()
    assert got["id"] == second["id"] and got["source_url"] == f"s3://{source}/"
    assert got["destination_url"] == f"s3://{dest}/two/" and got["options"]["tier"] == "express"
    listed = rest.get("/jobs").json()
    assert [j["id"] for j in listed] == [second["id"], first["id"]]
    assert listed[1]["name"] == "first" and listed[1]["state"] == "cancelled"
    assert [j["id"] for j in rest.get("/jobs", params={"all": "false"}).json()] == [second["id"]]
    log = rest.get(f"/jobs/{first['id']}/log").json()
    assert any("cancelled" in line["message"] for line in log)


def test_cancel_a_running_job(idle_node, buckets, s3_env):
    node, rest = idle_node
    source, dest = buckets
    put_objects(s3_env.client(), source, {f"k{i}": b"x" for i in range(10)})
    job = submit(rest, f"s3://{source}/", f"s3://{dest}/", s3_env.endpoint_url)
    # a job is running from its first planned page; planning_done follows in a later commit
    running = wait_for(lambda: (found := rest.get(f"/jobs/{job['id']}").json())["planning_done"] and found,
                       timeout=60, what="planning to finish")
    assert running["state"] == "running" and running["objects_total"] == 10

    cancelled = rest.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"]
    again = rest.post(f"/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert rest.get(f"/jobs/{job['id']}").json()["state"] == "cancelled"


def test_a_long_poll_answers_when_the_job_ends(idle_node, buckets, s3_env):
    """GET /jobs/ID?wait=S: the job as it stands after S seconds, or at once when it ends."""
    node, rest = idle_node
    source, dest = buckets
    put_objects(s3_env.client(), source, {"k": b"x"})
    job = submit(rest, f"s3://{source}/", f"s3://{dest}/", s3_env.endpoint_url)   # no workers: it waits
    assert rest.get(f"/jobs/{job['id']}", params={"wait": 0.2}).json()["state"] in ("queued", "planning", "running")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(rest.get, f"/jobs/{job['id']}", params={"wait": 30})
        rest.post(f"/jobs/{job['id']}/cancel").raise_for_status()
        assert answer.result().json()["state"] == "cancelled"
    too_long = rest.get(f"/jobs/{job['id']}", params={"wait": 31})
    assert too_long.status_code == 422 and "wait" in too_long.text


def test_retry_copies_the_failed_objects_again(idle_node, start_worker, buckets, s3_env):
    node, rest = idle_node
    source, dest = buckets
    client = s3_env.client()
    objects = small_and_large(3, small=20)
    put_objects(client, source, objects)
    job = submit(rest, f"s3://{source}/", f"s3://{dest}/", s3_env.endpoint_url)
    wait_job(rest, job["id"], states=("running",), timeout=60)
    early = rest.post(f"/jobs/{job['id']}/retry")
    assert early.status_code == 409 and "still running" in early.json()["message"]

    for key in ("small/00007", "small/00011"):    # vanish after planning, before copying
        client.delete_object(Bucket=source, Key=key)
    start_worker(node)
    done = wait_job(rest, job["id"])
    assert done["state"] == "complete_with_warnings", done
    assert (done["objects_done"], done["objects_failed"]) == (len(objects) - 2, 2)
    failures = rest.get(f"/jobs/{job['id']}/failures").json()
    assert [f["key"] for f in failures] == ["small/00007", "small/00011"] and failures[0]["kind"] == "copy"

    # one comes back before the retry, the other only later: the retry copies the one, and the
    # other is a failure of its own again (it used to fail the whole retry's planning)
    client.put_object(Bucket=source, Key="small/00007", Body=objects["small/00007"])
    retried = rest.post(f"/jobs/{job['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "queued"
    partly = wait_job(rest, job["id"])
    assert partly["state"] == "complete_with_warnings" and not partly["error"], partly
    assert (partly["objects_total"], partly["objects_done"], partly["objects_failed"]) == \
        (len(objects), len(objects) - 1, 1)
    assert [(f["key"], f["reason"]) for f in rest.get(f"/jobs/{job['id']}/failures").json()] == \
        [("small/00011", "it is no longer at the source")]

    client.put_object(Bucket=source, Key="small/00011", Body=objects["small/00011"])
    assert rest.post(f"/jobs/{job['id']}/retry").status_code == 200
    final = wait_job(rest, job["id"])
    assert final["state"] == "complete", final
    assert (final["objects_total"], final["objects_done"], final["objects_failed"]) == (len(objects),) * 2 + (0,)
    assert final["bytes_done"] == sum(len(b) for b in objects.values())
    assert rest.get(f"/jobs/{job['id']}/failures").json() == []
    assert_same_objects(client, dest, objects)
    nothing_left = rest.post(f"/jobs/{job['id']}/retry")
    assert nothing_left.status_code == 409 and "no failed objects" in nothing_left.json()["message"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "test-token"}],
                         ids=["no-token", "wrong-token", "not-bearer"])
@pytest.mark.parametrize("method, path", [("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/jobs/1"),
                                          ("POST", "/jobs/1/cancel"), ("POST", "/jobs/1/retry")])
def test_requests_without_the_token_are_refused(idle_node, method, path, headers):
    _, rest = idle_node
    rest.session.headers.pop("Authorization")
    response = getattr(rest, method.lower())(path, headers=headers, json={"source": "/x", "destination": "/y"})
    assert response.status_code == 401
    assert "token" in response.json()["message"]


@pytest.mark.parametrize("method, path", [("GET", "/jobs/424242"), ("POST", "/jobs/424242/cancel"),
                                          ("POST", "/jobs/424242/retry"), ("GET", "/jobs/424242/failures"),
                                          ("GET", "/jobs/424242/log")])
def test_a_missing_job_is_404(idle_node, method, path):
    _, rest = idle_node
    response = getattr(rest, method.lower())(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found" and "424242" in response.json()["message"]


@pytest.mark.parametrize("send, code, status, message", [
    ({"json": {"source": "/x", "destination": "/y", "colour": "red"}}, "unprocessable_entity", 422,
     "colour: Unknown field."),
    ({"json": {"source": "/x", "destination": "/y", "tier": "platinum", "recursive": "perhaps"}},
     "unprocessable_entity", 422, "recursive: Not a valid boolean.; tier: Must be one of: express, plus, ultra."),
    ({"json": [1, 2]}, "unprocessable_entity", 422, "request: Invalid input type."),
    ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, "bad_request", 400,
     "request: Invalid JSON body."),
], ids=["unknown field", "two bad fields", "not an object", "not JSON"])
def test_a_refused_request_says_why_in_the_shape_of_every_error(idle_node, send, code, status, message):
    """Requests that fail validation answer like the API's other errors (code word, message,
    status), with the field errors beside the message."""
    _, rest = idle_node
    response = rest.post("/jobs", **send)
    body = response.json()
    assert (response.status_code, body["code"], body["status"]) == (status, code, status)
    assert "; ".join(sorted(body["message"].split("; "))) == message
    assert body["errors"]


def test_openapi_document_lists_the_paths(idle_node):
    _, rest = idle_node
    rest.session.headers.pop("Authorization")
    document = rest.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    for path, methods in {"/api/v1/jobs": {"get", "post"}, "/api/v1/jobs/{job_id}": {"get"},
                          "/api/v1/jobs/{job_id}/cancel": {"post"}, "/api/v1/jobs/{job_id}/retry": {"post"},
                          "/api/v1/jobs/{job_id}/failures": {"get"}, "/api/v1/jobs/{job_id}/log": {"get"}}.items():
        assert methods <= set(paths[path]), path
    error = document.json()["components"]["schemas"]["ErrorOut"]["properties"]
    assert (error["code"]["type"], error["status"]["type"], error["message"]["type"]) == ("string", "integer", "string")


def test_a_retried_entry_that_is_no_file_says_again_what_it_is(idle_node, start_worker, tmp_path):
    """Retrying a local job's failed objects: a named pipe is still a named pipe (not "no longer
    at the source"), and a link that points somewhere now is copied."""
    node, rest = idle_node
    source = tmp_path / "src"
    source.mkdir()
    (source / "frame.dpx").write_bytes(b"frame")
    os.mkfifo(source / "pipe")
    (source / "late.dpx").symlink_to("rendered.dpx")     # nothing there yet
    start_worker(node, region="local")     # the region of a job between local directories
    job = submit(rest, str(source), str(tmp_path / "dst"), None)
    done = wait_job(rest, job["id"])
    assert (done["objects_done"], done["objects_failed"]) == (1, 2), done
    (source / "rendered.dpx").write_bytes(b"rendered")
    assert rest.post(f"/jobs/{job['id']}/retry").status_code == 200
    again = wait_job(rest, job["id"])
    assert (again["objects_done"], again["objects_failed"]) == (2, 1), again
    assert [(f["key"], f["reason"]) for f in rest.get(f"/jobs/{job['id']}/failures").json()] == \
        [("pipe", "a named pipe, not a regular file: not copied")]
    assert (tmp_path / "dst" / "late.dpx").read_bytes() == b"rendered"
