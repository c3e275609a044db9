"""The benchmarks report the CPU time the host took from the machine while they ran."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.append(ROOT)            # bench/ is not an installed package
from bench import steal  # noqa: E402


def test_steal_is_read_from_proc_stat_and_reported_as_a_share_of_the_cpus(tmp_path, monkeypatch):
    ticks = [1000]
    stat = tmp_path / "stat"

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/stat"
        stat.write_text(f"cpu  10 0 20 300 4 0 5 {ticks[0]} 0 0\ncpu0 5 0 10 150 2 0 2 500 0 0\n")
        return open(stat, *args, **kwargs)

    monkeypatch.setattr(steal, "open", fake_open, raising=False)
    monkeypatch.setattr(steal.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(steal.os, "cpu_count", lambda: 2)
    meter = steal.StealMeter()
    assert meter.start == 10.0
    ticks[0] = 1050                          # half a second of two CPUs' 10 s: 2.5%
    assert meter.seconds() == 0.5
    assert "0.50 s, 2.5% of the CPUs' time: the timings are slower than the code" in meter.line(10.0)
    ticks[0] = 1002
    assert meter.line(10.0).endswith("0.02 s, 0.1% of the CPUs' time")


def test_no_proc_stat_says_so():
    meter = steal.StealMeter()
    meter.start = None
    assert meter.seconds() is None and "not known" in meter.line(1.0)
