"""Timing shared by hylra's benchmark scripts (run on the GPU machine, which has PyTorch).

Every figure is the median of CUDA-event timings of single calls, each preceded by an L2 flush
(a write over a buffer larger than the 60 MB L2), with inputs rotated over several buffers so no
call finds its data cached. The write leaves L2 full of dirty lines, which the timed call's reads
must first write back; HYLRA_FLUSH=read flushes by reading the buffer instead (clean lines), to
measure what that write-back costs. hylra and the baselines are timed by the same function on the same
tensors in the same process.
"""
import ctypes
import datetime
import os
import statistics
import subprocess

import torch

_L2_FLUSH_BYTES = 256 << 20


class ColdTimer:
    def __init__(self, device="cuda"):
        self._flush = torch.empty(_L2_FLUSH_BYTES, dtype=torch.uint8, device=device)
        self._flush_by_read = os.environ.get("HYLRA_FLUSH", "write") == "read"
        if self._flush_by_read:
            self._flush = self._flush.view(torch.int32)
        self._start = torch.cuda.Event(enable_timing=True)
        self._stop = torch.cuda.Event(enable_timing=True)

    def median_us(self, fn, inputs, reps=100, warmup=5):
        """Median time in microseconds of fn(*inputs[i % len(inputs)]), cold L2 before each call."""
        for i in range(warmup):
            fn(*inputs[i % len(inputs)])
        times = []
        for i in range(reps):
            args = inputs[i % len(inputs)]
            if self._flush_by_read:
                self._flush.max()
            else:
                self._flush.zero_()
            self._start.record()
            fn(*args)
            self._stop.record()
            self._stop.synchronize()
            times.append(self._start.elapsed_time(self._stop) * 1e3)
        return statistics.median(times)


def load_library(name, build_dir=None):
    """Loads lib<name>.so from the build tree (HYLRA_BUILD_DIR or ./build)."""
    build_dir = build_dir or os.environ.get("HYLRA_BUILD_DIR", "build")
    return ctypes.CDLL(os.path.join(build_dir, "bench", f"lib{name}.so"))


def ptr(tensor):
    """A tensor's device address as a ctypes pointer argument."""
    return ctypes.c_void_p(tensor.data_ptr()) if tensor is not None else ctypes.c_void_p(0)


def stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


def header(title):
    """A heading and one line naming the date, GPU, commit and framework versions, for bench/RESULTS.md."""
    commit = os.environ.get("HYLRA_COMMIT")  # the GPU machine gets a copy of the tree without .git
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = "unknown"
    return (f"### {title}\n{datetime.date.today()} | {torch.cuda.get_device_name()} | torch {torch.__version__} | "
            f"cuDNN {torch.backends.cudnn.version()} | commit {commit or 'unknown'} | "
            f"L2 flush by {os.environ.get('HYLRA_FLUSH', 'write')}\n")
