"""bench/fleet_sim.py ships the codec's speed into the estimates only from a full bench/codec.py
run of the codec at hand: a result left by an older build once made every compress estimate
3-4x too slow."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)            # bench/ is not an installed package
from bench import codec_build, fleet_sim  # noqa: E402

SHIPPED = {"codec": {"encode_bytes_per_s_per_vcpu": 1.0, "decode_bytes_per_s_per_vcpu": 2.0, "source": "shipped"}}


def report(codec_sources: str | None = "this", **settings) -> dict:
    return {"settings": {"repeat": 3, "quick": False, "level": 2, **settings},
            "codec_sources": codec_build.source_digest() if codec_sources == "this" else codec_sources,
            "summary": {"overall": {"cloudmover": {"encode_MBps": 150.0, "decode_MBps": 175.0}}}}


def rates_from(tmp_path, monkeypatch, content: dict | None) -> dict:
    path = tmp_path / "codec.json"
    if content is not None:
        path.write_text(json.dumps(content))
    monkeypatch.setattr(fleet_sim, "CODEC_RESULTS", path)
    return fleet_sim.codec_rates(SHIPPED)


def test_a_full_run_of_this_codec_is_used(tmp_path, monkeypatch):
    rates = rates_from(tmp_path, monkeypatch, report())
    assert (rates["encode_bytes_per_s_per_vcpu"], rates["decode_bytes_per_s_per_vcpu"]) == (150e6, 175e6)


@pytest.mark.parametrize("content", [report(codec_sources="0" * 64), report(codec_sources=None),
                                     report(quick=True), report(level=3), None, {"summary": {}}],
                         ids=["another build", "no digest", "quick", "level 3", "no file", "not a report"])
def test_anything_else_keeps_the_shipped_speed_and_says_so(tmp_path, monkeypatch, capsys, content):
    assert rates_from(tmp_path, monkeypatch, content) == SHIPPED["codec"]
    assert "not a full level-2 run of this codec" in capsys.readouterr().err


def test_the_digest_follows_the_sources(tmp_path, monkeypatch):
    (tmp_path / "pyx").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "pyx" / "k.pyx").write_text("cdef int y\n")
    monkeypatch.setattr(codec_build, "CODEC_DIR", tmp_path)
    before = codec_build.source_digest()
    (tmp_path / "notes.txt").write_text("not a source")
    assert codec_build.source_digest() == before
    (tmp_path / "pyx" / "k.pyx").write_text("cdef int z\n")
    assert codec_build.source_digest() != before
