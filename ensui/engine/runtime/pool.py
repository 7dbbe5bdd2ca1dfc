"""Worker processes: start them in their own sessions (so they outlive the terminal, the
app and the SSH connection), stop them, and list the lanes they serve.

One worker per GPU by default, each pinned with CUDA_VISIBLE_DEVICES; a CPU lane when
there is no GPU. CPU workers share the cores: each gets cores / workers torch threads,
and, when there are several, OpenMP threads sleep instead of spinning while they wait
(OMP_WAIT_POLICY=PASSIVE), since spinning torch processes on a few cores starve each
other; a single worker keeps spinning, which is faster alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from ensui.home import Home

STOP_GRACE_S = 30.0


@dataclass(frozen=True)
class Lane:
    name: str          # "cpu" or "cuda:<index>"
    env: dict


def lanes(cpu: int | None = None, gpus: list[int] | None = None) -> list[Lane]:
    """The lanes to start: the given GPUs (default: every visible one) and `cpu` CPU
    workers (default: one when there is no GPU, else none)."""
    if gpus is None:
        gpus = list(range(_gpu_count()))
    if cpu is None:
        cpu = 0 if gpus else 1
    threads = str(max(1, (os.cpu_count() or 1) // max(cpu, 1)))
    env = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": threads}
    if cpu > 1:  # spinning threads of several processes starve each other; one alone
        env["OMP_WAIT_POLICY"] = "PASSIVE"  # spins faster (PASSIVE costs it ~25 %)
    result = [Lane(f"cuda:{g}", {"CUDA_VISIBLE_DEVICES": str(g)}) for g in gpus]
    return result + [Lane("cpu", dict(env)) for _ in range(cpu)]


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:
        return 0


def start(home: Home, chosen: list[Lane], experiment: str | None = None,
          exit_when_idle: bool = False, max_running: int | None = None,
          min_free_gb: float = 0.0) -> list[subprocess.Popen]:
    """Start one `ensui worker` process per lane, each in a new session, logging to
    `<home>/logs/worker-*.log`."""
    logs = home.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for index, lane in enumerate(chosen):
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{index}"
        log_path = logs / f"worker-{stamp}.log"
        args = [sys.executable, "-m", "ensui", "--home", str(home.root), "worker",
                "--lane", lane.name, "--min-free-gb", str(min_free_gb)]
        if experiment:
            args += ["--experiment", experiment]
        if exit_when_idle:
            args.append("--exit-when-idle")
        if max_running:
            args += ["--max-running", str(max_running)]
        env = {**os.environ, "ENSUI_WORKER_LOG": str(log_path), **lane.env}
        with open(log_path, "ab") as out:
            procs.append(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True))
    return procs


def signal_worker(pid: int, sig: int) -> bool:
    """Signal a worker's process group (its session); False when it is already gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop(pids: list[int], grace_s: float = STOP_GRACE_S) -> list[int]:
    """SIGTERM the workers (each re-queues its job and exits); SIGKILL those still alive
    after `grace_s`. The pids that had to be killed."""
    alive = [pid for pid in pids if signal_worker(pid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _running(pid)]
    for pid in alive:
        signal_worker(pid, signal.SIGKILL)
    return alive


def _running(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # reaps our own children
        if finished:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1].startswith("Z")
    except OSError:
        return False
