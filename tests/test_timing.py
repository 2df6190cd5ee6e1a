"""Cost accounting: the accumulating device/wall timer, peak memory and the serialisable cost record."""

from __future__ import annotations

import json

import pytest
import torch

from hyperrecon.timing import CostRecord, DeviceTimer, peak_memory_mb, reset_peak_memory


def busy() -> None:
    a = torch.rand(128, 128)
    for _ in range(20):
        a = (a @ a).tanh()


def test_cpu_timer_accumulates_spans() -> None:
    timer = DeviceTimer("cpu")
    assert timer.device_seconds == 0.0 and timer.wall_seconds == 0.0
    with timer:
        busy()
    first_device, first_wall = timer.device_seconds, timer.wall_seconds
    assert first_device > 0 and first_wall > 0
    assert not timer.running
    timer.start()
    busy()
    assert timer.running and timer.device_seconds >= first_device  # readable while running
    timer.stop()
    assert timer.device_seconds > first_device and timer.wall_seconds > first_wall
    with pytest.raises(RuntimeError, match="without start"):
        timer.stop()
    timer.start()
    with pytest.raises(RuntimeError, match="twice"):
        timer.start()


def test_cpu_peak_memory_sees_a_large_allocation() -> None:
    reset_peak_memory("cpu")  # no-op on the CPU, must not fail
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert peak_memory_mb("cpu") >= 64
    del big


def test_cost_record_round_trip_and_plus() -> None:
    rec = CostRecord("hyper-S", "hyperunet", 743533, 10, 1.5, 2.0, 100.0, "cpu", "bf16")
    data = json.loads(json.dumps(rec.to_dict()))
    assert CostRecord.from_dict(data) == rec
    more = rec.plus(steps=5, device_seconds=0.5, wall_seconds=1.0, peak_memory_mb=80.0)
    assert (more.steps, more.device_seconds, more.wall_seconds, more.peak_memory_mb) == (15, 2.0, 3.0, 100.0)
    assert more.model_name == "hyper-S" and rec.steps == 10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_timer_and_memory() -> None:
    timer = DeviceTimer("cuda")
    reset_peak_memory("cuda")
    with timer:
        a = torch.rand(1024, 1024, device="cuda")
        for _ in range(10):
            a = (a @ a).tanh()
    assert timer.device_seconds > 0 and timer.wall_seconds > 0
    assert peak_memory_mb("cuda") >= 4
