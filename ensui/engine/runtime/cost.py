"""What a job cost: wall time, CPU time, peak host memory, peak GPU memory, GPU-hours.

Host peak memory is the process's high-water mark, reset at the start of each job where
Linux allows it (/proc/self/clear_refs), so it is the job's own peak; elsewhere it is the
process's peak so far.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import torch


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # data-loader processes
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    def __init__(self, device: torch.device):
        self.device = device
        _reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.wall0, self.cpu0 = time.perf_counter(), _cpu_seconds()

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall0
        gpu = self.device.type == "cuda"
        return {"wall_s": wall, "cpu_s": _cpu_seconds() - self.cpu0,
                "peak_rss_mb": _peak_rss_mb(),
                "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2 ** 20 if gpu else None,
                "gpu_hours": wall / 3600 if gpu else None}
