"""``cloudmover codec encode|decode|info|bench`` on real files, as a user runs it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.formats import samples

CLOUDMOVER = str(Path(sys.executable).with_name("cloudmover"))


def run(*args, cwd):
    return subprocess.run([CLOUDMOVER, "codec", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def frames(tmp_path):
    generator = np.random.default_rng(7)
    y, x = np.mgrid[0:64, 0:80]
    base = (np.sin(x / 9.0) + np.cos(y / 11.0)) * 200 + 500
    rgb = np.clip(base[..., None] + generator.normal(0, 3, (64, 80, 3)), 0, 1023).astype(np.uint16)
    (tmp_path / "shot.dpx").write_bytes(samples.write_dpx(rgb, bits=10, packing=1))
    (tmp_path / "plate.tif").write_bytes(samples.write_tiff((rgb >> 2).astype(np.uint8)))
    (tmp_path / "notes.txt").write_bytes(b"call sheet\n" * 40)
    return tmp_path


def test_encode_then_decode_restores_every_file_byte_for_byte(frames):
    names = ["shot.dpx", "plate.tif", "notes.txt"]
    originals = {name: (frames / name).read_bytes() for name in names}
    encoded = run("encode", *names, cwd=frames)
    assert encoded.returncode == 0, encoded.stderr
    assert "shot.dpx → shot.dpx.cmv" in encoded.stdout and "(ratio" in encoded.stdout
    assert "not an image (stored generically)" in encoded.stdout
    for name in names:
        (frames / name).unlink()
    decoded = run("decode", *[name + ".cmv" for name in names], cwd=frames)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.count("checksum verified") == 3
    for name in names:
        assert (frames / name).read_bytes() == originals[name]


def test_info_and_bench_report_what_they_measured(frames):
    assert run("encode", "shot.dpx", cwd=frames).returncode == 0
    info = run("info", "shot.dpx.cmv", "--json", cwd=frames)
    assert info.returncode == 0, info.stderr
    [described] = json.loads(info.stdout)
    assert described["format"] == "dpx"
    assert described["original_size"] == (frames / "shot.dpx").stat().st_size
    assert [r["sample"] for r in described["rasters"]] == ["dpx10a_be"]
    bench = run("bench", "shot.dpx", "plate.tif", "--threads", "1", cwd=frames)
    assert bench.returncode == 0, bench.stderr
    assert bench.stdout.count("(best of 3), bit-exact") == 2 and "total: 2 files" in bench.stdout
    measured = run("bench", "shot.dpx", "--repeat", "2", "--json", cwd=frames)
    assert measured.returncode == 0, measured.stderr
    [result] = json.loads(measured.stdout)
    assert result["runs"] == 2 and result["format"] == "dpx" and result["encode_s"] > 0
    refused = run("bench", "shot.dpx", "--repeat", "0", cwd=frames)
    assert refused.returncode == 2 and "must be at least 1" in refused.stderr


def test_a_damaged_container_fails_alone_with_the_codec_reason(frames):
    assert run("encode", "shot.dpx", "plate.tif", cwd=frames).returncode == 0
    damaged = bytearray((frames / "shot.dpx.cmv").read_bytes())
    damaged[len(damaged) // 2] ^= 0x55
    (frames / "shot.dpx.cmv").write_bytes(bytes(damaged))
    shutil.move(frames / "shot.dpx", frames / "shot.original")
    shutil.move(frames / "plate.tif", frames / "plate.original")
    result = run("decode", "shot.dpx.cmv", "plate.tif.cmv", cwd=frames)
    assert result.returncode == 1
    assert "shot.dpx.cmv: " in result.stderr and "corrupt" in result.stderr
    assert not (frames / "shot.dpx").exists() and not (frames / "shot.dpx.partial").exists()
    assert (frames / "plate.tif").read_bytes() == (frames / "plate.original").read_bytes()


def test_existing_outputs_and_foreign_files_are_refused(frames):
    assert run("encode", "shot.dpx", cwd=frames).returncode == 0
    again = run("encode", "shot.dpx", cwd=frames)
    assert again.returncode == 1 and "exists (use --force to overwrite)" in again.stderr
    assert run("encode", "shot.dpx", "--force", cwd=frames).returncode == 0
    foreign = run("decode", "notes.txt", cwd=frames)
    assert foreign.returncode == 1 and "expected a .cmv file" in foreign.stderr
    missing = run("info", "nothing-here.cmv", cwd=frames)
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


@pytest.mark.parametrize("action", ["encode", "decode", "info", "bench"])
def test_a_directory_is_refused_by_name_and_the_files_beside_it_still_run(frames, action):
    (frames / "reels").mkdir()
    assert run("encode", "shot.dpx", cwd=frames).returncode == 0
    given = "shot.dpx" if action in ("encode", "bench") else "shot.dpx.cmv"
    result = run(action, ".", "reels", given, *(["--force"] if action in ("encode", "decode") else []), cwd=frames)
    assert result.returncode == 1
    assert ".: is a directory" in result.stderr and "reels: is a directory" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert given in result.stdout
