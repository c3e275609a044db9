"""CPU time the host took from this virtual machine during a benchmark run.

On a cloud VM the hypervisor may run other guests on the cores this one
thinks it has; Linux counts that time as *steal* (``/proc/stat``).  Timings
taken meanwhile are slower, two-thread ones first (either thread's stall
holds up both), so each benchmark reports how much there was.
"""
import os


def steal_seconds() -> float | None:
    """CPU seconds stolen from this machine since boot, over all its CPUs (None off Linux)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") if fields[0] == "cpu" else None
    except (OSError, IndexError, ValueError):
        return None


class StealMeter:
    """Steal from its creation on: ``seconds()``, and ``line(elapsed)`` to print."""

    def __init__(self):
        self.start = steal_seconds()

    def seconds(self) -> float | None:
        now = steal_seconds()
        return None if now is None or self.start is None else now - self.start

    def line(self, elapsed: float) -> str:
        taken = self.seconds()
        if taken is None:
            return "CPU steal (time the host gave other guests): not known on this system"
        share = taken / max(elapsed * (os.cpu_count() or 1), 1e-9)
        return (f"CPU steal (time the host gave other guests) during the run: {taken:.2f} s, {share:.1%} of the "
                f"CPUs' time" + ("" if share < 0.01 else ": the timings are slower than the code, two-thread "
                                  "ones most; compare them with a run without"))
