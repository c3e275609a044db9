"""The worker's image codec stage on local directories, and the pieces around it:
planning whole objects for a codec job, the queue a codec job uses, and the
savings it reports."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest

import codec
from pipeline.planner import PlanSettings, plan_page
from pipeline.store import ObjectInfo, StoreSpec, open_store
from support.budgets import RecordingBudget
from support.frames import dpx_frame, tiff_frame
from worker import codec_stage
from worker.codec_stage import CodecSettings, CorruptContainer
from worker.strategies import MemoryBudget
from codec.formats.samples import write_tiff

MiB = 1 << 20


@pytest.fixture
def stores(tmp_path):
    """Factory: (source, destination) local stores, the source holding ``files``."""
    def make(files: dict[str, bytes]):
        for key, body in files.items():
            (tmp_path / "src" / key).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "src" / key).write_bytes(body)
        return (open_store(StoreSpec("local", str(tmp_path / "src"))),
                open_store(StoreSpec("local", str(tmp_path / "dst"))))
    return make


def ref(key: str, body: bytes, dest_key: str | None = None) -> dict:
    return {"key": key, "dest_key": dest_key or key, "size": len(body), "etag": None}


def move(source, destination, obj, *, mode, memory=None, settings=CodecSettings()):
    return codec_stage.move(source, destination, obj, mode=mode, memory=memory or MemoryBudget(64 * MiB),
                            copying=MemoryBudget(64 * MiB), settings=settings)


def read(store, key: str) -> bytes:
    return store.path(key).read_bytes()


def test_images_are_encoded_and_restored_and_other_files_move_unchanged(stores):
    files = {"a.dpx": dpx_frame(1), "b.tif": tiff_frame(2), "notes.txt": b"shot notes\n" * 50,
             "not-really.dpx": random.Random(3).randbytes(5000)}
    source, packed = stores(files)
    for key, body in files.items():
        moved = move(source, packed, ref(key, body), mode="compress")
        if key in ("a.dpx", "b.tif"):
            assert moved.codec == "encoded" and moved.written == len(read(packed, key)) < len(body)
            assert codec.is_encoded(read(packed, key)) and moved.note is None
        else:
            assert moved.codec is None and moved.written is None and moved.note is None
            assert read(packed, key) == body
        assert moved.checksum == f"md5:{hashlib.md5(read(packed, key)).hexdigest()}"

    restored = open_store(StoreSpec("local", str(packed.root.parent / "restored")))
    for key, body in files.items():
        stored = read(packed, key)
        moved = move(packed, restored, ref(key, stored), mode="decompress")
        assert read(restored, key) == body, key
        assert (moved.codec, moved.written) == (("decoded", len(body)) if key in ("a.dpx", "b.tif") else (None, None))


def test_an_image_above_the_codec_limit_moves_unchanged_with_a_note(stores):
    body = dpx_frame(4)
    source, destination = stores({"big.dpx": body})
    moved = move(source, destination, ref("big.dpx", body), mode="compress",
                 settings=CodecSettings(max_object=len(body) - 1))
    assert moved.codec is None and read(destination, "big.dpx") == body
    assert moved.note == f"larger than the codec limit of {len(body) - 1} bytes: moved unchanged"


def test_a_container_above_the_codec_limit_moves_unchanged_still_encoded(stores):
    container = codec.encode(dpx_frame(8))
    source, destination = stores({"big.dpx": container})
    moved = move(source, destination, ref("big.dpx", container), mode="decompress",
                 settings=CodecSettings(max_object=len(container) - 1))
    assert moved.codec is None and read(destination, "big.dpx") == container
    assert moved.note == (f"larger than the codec limit of {len(container) - 1} bytes once restored: "
                          "moved unchanged (still encoded)")


def test_an_image_that_does_not_shrink_moves_unchanged_with_a_note(stores):
    body = write_tiff(np.random.default_rng(5).integers(0, 1 << 16, (96, 160, 3), dtype=np.uint16))
    assert codec.sniff(body) == "tiff"
    source, destination = stores({"noise.tif": body})
    moved = move(source, destination, ref("noise.tif", body), mode="compress")
    assert moved.codec is None and read(destination, "noise.tif") == body
    assert moved.note == "tiff image did not shrink: moved unchanged"


def test_an_already_encoded_object_is_not_encoded_twice(stores):
    container = codec.encode(dpx_frame(6))
    source, destination = stores({"a.dpx": container})
    moved = move(source, destination, ref("a.dpx", container), mode="compress")
    assert moved.codec is None and moved.note == "already encoded: moved unchanged"
    assert read(destination, "a.dpx") == container


def test_a_corrupt_container_fails_with_the_reason_and_writes_nothing(stores):
    container = bytearray(codec.encode(dpx_frame(7)))
    middle = len(container) // 2
    container[middle:middle + 64] = bytes(64)
    source, destination = stores({"bad.dpx": bytes(container)})
    with pytest.raises(CorruptContainer) as failed:
        move(source, destination, ref("bad.dpx", bytes(container)), mode="decompress")
    assert str(failed.value).startswith(f"corrupt codec container: decode {source.spec.url('bad.dpx')}: ")
    assert not destination.root.exists() or not any(destination.root.rglob("*"))
    assert read(source, "bad.dpx") == bytes(container)


def test_the_codec_stage_counts_against_the_memory_budget(stores):
    frames = {f"f{n}.dpx": dpx_frame(n) for n in range(3)}
    source, destination = stores(frames)
    budget = RecordingBudget(64 * MiB)
    for key, body in frames.items():
        move(source, destination, ref(key, body), mode="compress", memory=budget)
    assert budget.taken == [codec_stage.MEMORY_FACTOR * len(body) for body in frames.values()]
    assert budget._free == budget.limit   # every byte given back


def test_a_codec_job_plans_objects_up_to_the_limit_whole():
    page = [ObjectInfo("small", 10), ObjectInfo("frame", 80 * MiB), ObjectInfo("huge", 300 * MiB)]
    settings = PlanSettings(multipart_threshold=64 * MiB, part_size=64 * MiB, whole_object_limit=200 * MiB)
    planned = plan_page(page, source_prefix="", dest_prefix="", settings=settings)
    assert [[o["key"] for o in batch] for batch in planned.copy_batches] == [["small", "frame"]]
    assert [obj.key for obj, _ in planned.multipart] == ["huge"]
    plain = plan_page(page, source_prefix="", dest_prefix="", settings=PlanSettings())
    assert [obj.key for obj, _ in plain.multipart] == ["frame", "huge"]


@pytest.mark.parametrize("mode, region", [("none", "us-west-2"), ("compress", "eu-west-1"),
                                          ("decompress", "us-west-2")])
def test_encode_tasks_go_to_the_source_region_and_decode_tasks_to_the_destination(mode, region):
    from headnode.config import load_config
    from headnode.regions import region_of
    folders = {"paris": {"bucket": "a", "region": "eu-west-1"}, "oregon": {"bucket": "b", "region": "us-west-2"}}
    config = load_config({"FOLDERS": folders, "SECRET_KEY": "k"}, env={})
    assert region_of("folder:paris/x/", "folder:oregon/y/", codec=mode, config=config) == region


@pytest.mark.parametrize("mode, transfer, storage", [("compress", 0.02 * 3, 0.023 * 3), ("decompress", 0.02 * 3, 0.0)])
def test_savings_are_bytes_saved_times_the_configured_prices(mode, transfer, storage):
    from headnode.config import DEFAULTS
    from headnode.models import Job
    from headnode.savings import GB, codec_summary
    read_, written = (5 * GB, 2 * GB) if mode == "compress" else (2 * GB, 5 * GB)
    job = Job(options={"codec": mode}, codec_objects=7, codec_bytes_read=read_, codec_bytes_written=written)
    summary = codec_summary(job, DEFAULTS)
    assert summary["bytes_saved"] == job.bytes_saved == 3 * GB
    assert summary["transfer_cost_saved_usd"] == pytest.approx(transfer)
    assert summary["storage_cost_saved_per_month_usd"] == pytest.approx(storage)
    assert codec_summary(Job(options={"codec": "none"}), DEFAULTS) is None
