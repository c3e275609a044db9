"""The image codec job option end to end on SeaweedFS (acceptance 4).

A compress job (through the REST API) stores a folder of DPX and TIFF frames
encoded, with metadata naming the original, and reports the bytes and cost
saved; a decompress job (through ``cloudmover cp``) restores every object byte
for byte, content type and metadata included. Files that are not images, even
with an image's extension, move unchanged. A damaged container fails with the
reason, and a move keeps its source.
"""
from __future__ import annotations

import hashlib
import json
import random

import pytest

import codec
from support.frames import dpx_frame, tiff_frame
from support.waiting import wait_for
from test_cp import run_cp

GB = 1 << 30
FINAL = ("complete", "complete_with_warnings", "failed", "cancelled")
CODEC_TYPE = "application/x-cloudmover-codec"
CODEC_KEYS = {"cloudmover-codec", "cloudmover-original-size", "cloudmover-original-checksum",
              "cloudmover-original-format", "cloudmover-original-content-type"}


def frames_folder() -> dict[str, tuple[bytes, str]]:
    """key -> (body, content type): DPX and TIFF frames, a text file, and random bytes named .dpx."""
    objects = {f"shot/frame-{n:03d}.dpx": (dpx_frame(n), "image/x-dpx") for n in range(4)}
    objects.update({f"shot/plate-{n:03d}.tif": (tiff_frame(100 + n), "image/tiff") for n in range(4)})
    objects["notes/readme.txt"] = (b"shot 12, take 3: keep\n" * 200, "text/plain")
    objects["shot/not-an-image.dpx"] = (random.Random(9).randbytes(30_000), "image/x-dpx")
    return objects


IMAGES = {key for key in frames_folder() if key.startswith(("shot/frame", "shot/plate"))}


def put_folder(client, bucket: str, prefix: str, objects: dict) -> None:
    for key, (body, content_type) in objects.items():
        client.put_object(Bucket=bucket, Key=prefix + key, Body=body, ContentType=content_type,
                          Metadata={"shot": "12", "origin": key})


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def wait_job(rest, job_id: int) -> dict:
    def finished():
        job = rest.get(f"/jobs/{job_id}").json()
        return job if job["state"] in FINAL else None
    return wait_for(finished, timeout=240, what=f"job {job_id} to finish")


def test_compress_then_decompress_restores_every_frame(head_node, api, buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    objects = frames_folder()
    put_folder(client, source, "frames/", objects)
    # the source folder is in another region: a compress job's workers run there
    folders = {"studio": {"bucket": source, "region": "eu-west-1", "endpoint_url": s3_env.endpoint_url}}
    rest = api(head_node(FOLDERS=folders))

    created = rest.post("/jobs", json={"source": "folder:studio/frames/", "destination": f"s3://{dest}/packed/",
                                       "endpoint_url": s3_env.endpoint_url, "codec": "compress"})
    assert created.status_code == 201, created.text
    assert created.json()["region"] == "eu-west-1" and created.json()["options"]["codec"] == "compress"
    job = wait_job(rest, created.json()["id"])
    assert job["state"] == "complete", (job, rest.get(f"/jobs/{job['id']}/log").json())

    stored = {}
    for key, (body, content_type) in objects.items():
        got = client.get_object(Bucket=dest, Key="packed/" + key)
        stored[key] = got["Body"].read()
        if key in IMAGES:
            assert len(stored[key]) < len(body), key
            assert got["ContentType"] == CODEC_TYPE
            assert got["Metadata"]["cloudmover-original-size"] == str(len(body))
            assert got["Metadata"]["cloudmover-original-checksum"] == f"md5:{md5(body)}"
            assert got["Metadata"]["cloudmover-original-format"] == ("dpx" if key.endswith(".dpx") else "tiff")
            assert got["Metadata"]["cloudmover-original-content-type"] == content_type
            assert got["Metadata"]["cloudmover-codec"] and got["Metadata"]["shot"] == "12"
            assert codec.is_encoded(stored[key])
        else:   # not an image, whatever its name says: unchanged
            assert stored[key] == body, key
            assert got["ContentType"] == content_type and got["Metadata"] == {"shot": "12", "origin": key}

    saved = sum(len(objects[key][0]) - len(stored[key]) for key in IMAGES)
    assert saved > 0
    assert job["bytes_saved"] == saved
    assert job["codec"] == {
        "mode": "compress", "objects_encoded": len(IMAGES), "objects_decoded": 0,
        "bytes_read": sum(len(objects[key][0]) for key in IMAGES),
        "bytes_written": sum(len(stored[key]) for key in IMAGES), "bytes_saved": saved,
        "transfer_cost_saved_usd": pytest.approx(saved / GB * 0.02),
        "storage_cost_saved_per_month_usd": pytest.approx(saved / GB * 0.023)}
    assert job["objects_done"] == len(objects) and job["bytes_done"] == sum(len(b) for b, _ in objects.values())

    result = run_cp(f"s3://{dest}/packed/", f"s3://{dest}/restored/", "--recursive", "--codec", "decompress",
                    "--json", "--endpoint-url", s3_env.endpoint_url)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["state"] == "complete" and summary["copied"] == len(objects)
    assert summary["codec"]["mode"] == "decompress" and summary["codec"]["objects_decoded"] == len(IMAGES)
    assert summary["bytes_saved"] == summary["codec"]["bytes_saved"] == saved
    assert summary["codec"]["storage_cost_saved_per_month_usd"] == 0
    for key, (body, content_type) in objects.items():
        got = client.get_object(Bucket=dest, Key="restored/" + key)
        assert md5(got["Body"].read()) == md5(body), key
        assert got["ContentType"] == content_type, key
        assert got["Metadata"] == {"shot": "12", "origin": key}, key
    # the non-image objects are byte-identical in all three places
    for key in set(objects) - IMAGES:
        assert md5(client.get_object(Bucket=source, Key="frames/" + key)["Body"].read()) == md5(objects[key][0])


def test_a_corrupt_container_fails_with_the_reason_and_keeps_its_source(buckets, s3_env):
    source, dest = buckets
    client = s3_env.client()
    frames = {"good.dpx": (dpx_frame(20), "image/x-dpx"), "bad.dpx": (dpx_frame(21), "image/x-dpx")}
    put_folder(client, source, "frames/", frames)
    packed = run_cp(f"s3://{source}/frames/", f"s3://{dest}/packed/", "--recursive", "--codec", "compress",
                    "--json", "--endpoint-url", s3_env.endpoint_url)
    assert packed.returncode == 0, packed.stderr[-3000:]
    assert json.loads(packed.stdout)["codec"]["objects_encoded"] == 2

    # damage the body of one container, keeping its codec metadata
    got = client.get_object(Bucket=dest, Key="packed/bad.dpx")
    damaged = bytearray(got["Body"].read())
    middle = len(damaged) // 2
    damaged[middle:middle + 64] = bytes(b ^ 0x5A for b in damaged[middle:middle + 64])
    client.put_object(Bucket=dest, Key="packed/bad.dpx", Body=bytes(damaged), ContentType=got["ContentType"],
                      Metadata=got["Metadata"])

    result = run_cp(f"s3://{dest}/packed/", f"s3://{dest}/restored/", "--recursive", "--move",
                    "--codec", "decompress", "--endpoint-url", s3_env.endpoint_url)

    assert result.returncode == 1
    assert "complete with warnings: 1 copied" in result.stdout
    assert "image codec (decompress): 1 image(s) decoded" in result.stdout
    assert f"failed: packed/bad.dpx: corrupt codec container: decode s3://{dest}/packed/bad.dpx: " in result.stderr
    # nothing lost: the damaged container stays where it was, nothing half-restored lands
    assert client.get_object(Bucket=dest, Key="packed/bad.dpx")["Body"].read() == bytes(damaged)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=dest).get("Contents", ()))
    assert keys == ["packed/bad.dpx", "restored/good.dpx"]
    assert md5(client.get_object(Bucket=dest, Key="restored/good.dpx")["Body"].read()) == md5(frames["good.dpx"][0])


def test_an_image_above_the_codec_limit_moves_unchanged_with_a_note_in_the_job_log(head_node, api, buckets,
                                                                                  s3_env):
    source, dest = buckets
    client = s3_env.client()
    frames = {"small.dpx": (dpx_frame(30), "image/x-dpx"), "large.tif": (tiff_frame(31), "image/tiff")}
    limit = (len(frames["small.dpx"][0]) + len(frames["large.tif"][0])) // 2
    put_folder(client, source, "", frames)
    rest = api(head_node(CODEC_MAX_OBJECT=limit))

    created = rest.post("/jobs", json={"source": f"s3://{source}/", "destination": f"s3://{dest}/",
                                       "endpoint_url": s3_env.endpoint_url, "codec": "compress"})
    assert created.status_code == 201, created.text
    job = wait_job(rest, created.json()["id"])

    assert job["state"] == "complete" and job["codec"]["objects_encoded"] == 1
    assert client.get_object(Bucket=dest, Key="small.dpx")["ContentType"] == CODEC_TYPE
    large = client.get_object(Bucket=dest, Key="large.tif")
    assert large["Body"].read() == frames["large.tif"][0] and large["ContentType"] == "image/tiff"
    log = [line["message"] for line in rest.get(f"/jobs/{job['id']}/log").json()]
    assert any(line.endswith(f": large.tif: larger than the codec limit of {limit} bytes: moved unchanged")
               for line in log), log


def test_a_job_with_an_unknown_codec_mode_is_refused(head_node, api, buckets, s3_env):
    source, dest = buckets
    rest = api(head_node(FLEET="none"))
    refused = rest.post("/jobs", json={"source": f"s3://{source}/", "destination": f"s3://{dest}/",
                                       "codec": "squash"})
    assert refused.status_code == 422
    assert "codec" in refused.json()["errors"]["json"]


def codec_sync(source: str, destination: str, mode: str, endpoint_url: str) -> dict:
    result = run_cp(source, destination, "--recursive", "--sync", "--codec", mode, "--json",
                    "--endpoint-url", endpoint_url)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    summary = json.loads(result.stdout)
    return {"copied": summary["copied"], "skipped": summary["skipped"], "failed": summary["failed"],
            "coded": summary["codec"]["objects_encoded"] + summary["codec"]["objects_decoded"]}


def test_a_second_codec_sync_encodes_and_decodes_nothing_and_a_changed_frame_again(buckets, s3_env, tmp_path):
    """Sync mode with the image codec: an encoded copy is smaller than its original, so it is
    known by the original its metadata records (the source's ETag when it was encoded, or its
    MD5), a restored one by the MD5 its container records. Without that, every sync encoded and
    sent every frame again."""
    source, dest = buckets
    client = s3_env.client()
    objects = frames_folder()
    put_folder(client, source, "frames/", objects)
    url, n = s3_env.endpoint_url, len(objects)
    packed, restored = f"s3://{dest}/packed/", f"s3://{dest}/restored/"

    assert codec_sync(f"s3://{source}/frames/", packed, "compress", url) == \
        {"copied": n, "skipped": 0, "failed": 0, "coded": len(IMAGES)}
    assert codec_sync(f"s3://{source}/frames/", packed, "compress", url) == \
        {"copied": 0, "skipped": n, "failed": 0, "coded": 0}
    assert codec_sync(packed, restored, "decompress", url) == {"copied": n, "skipped": 0, "failed": 0,
                                                                "coded": len(IMAGES)}
    assert codec_sync(packed, restored, "decompress", url) == {"copied": 0, "skipped": n, "failed": 0, "coded": 0}

    changed = dpx_frame(77)
    client.put_object(Bucket=source, Key="frames/shot/frame-001.dpx", Body=changed, ContentType="image/x-dpx")
    assert codec_sync(f"s3://{source}/frames/", packed, "compress", url) == \
        {"copied": 1, "skipped": n - 1, "failed": 0, "coded": 1}
    assert codec_sync(packed, restored, "decompress", url) == {"copied": 1, "skipped": n - 1, "failed": 0,
                                                                "coded": 1}
    got = client.get_object(Bucket=dest, Key="restored/shot/frame-001.dpx")
    assert md5(got["Body"].read()) == md5(changed) and got["Metadata"] == {}     # the codec's keys stay behind

    # from disk: a file's version stands for its ETag; one touched but unchanged is known by its MD5
    disk = tmp_path / "frames"
    for key, (body, _) in objects.items():
        (disk / key).parent.mkdir(parents=True, exist_ok=True)
        (disk / key).write_bytes(body)
    uploaded = f"s3://{dest}/from-disk/"
    assert codec_sync(str(disk), uploaded, "compress", url)["coded"] == len(IMAGES)
    (disk / "shot/plate-002.tif").touch()
    assert codec_sync(str(disk), uploaded, "compress", url) == {"copied": 0, "skipped": n, "failed": 0, "coded": 0}

    # disk to disk: no metadata there, so a container's header says what it stands for
    packed_disk, restored_disk = tmp_path / "packed", tmp_path / "restored"
    for mode, source_dir, dest_dir in (("compress", disk, packed_disk), ("decompress", packed_disk, restored_disk)):
        assert codec_sync(str(source_dir), str(dest_dir), mode, url) == \
            {"copied": n, "skipped": 0, "failed": 0, "coded": len(IMAGES)}
        assert codec_sync(str(source_dir), str(dest_dir), mode, url) == \
            {"copied": 0, "skipped": n, "failed": 0, "coded": 0}
    (disk / "shot/frame-002.dpx").write_bytes(dpx_frame(78))
    for mode, source_dir, dest_dir in (("compress", disk, packed_disk), ("decompress", packed_disk, restored_disk)):
        assert codec_sync(str(source_dir), str(dest_dir), mode, url) == \
            {"copied": 1, "skipped": n - 1, "failed": 0, "coded": 1}
    assert (restored_disk / "shot/frame-002.dpx").read_bytes() == dpx_frame(78)
