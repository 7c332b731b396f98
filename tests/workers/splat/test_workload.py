"""The splat workload's per-device choices: trainer settings and rasterizer.

The session loop itself runs end to end in tests/e2e/test_splat.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contracts.specs.session_params import SplatParams
from modal_workers.runtime.worker_runtime import PermanentError
from modal_workers.splat import workload as splat
from modal_workers.splat.settings import SplatSettings

ROOT = Path(__file__).resolve().parents[3]


def test_cpu_sessions_are_bounded_and_cuda_sessions_take_the_params() -> None:
    settings = SplatSettings(near_m=0.1, far_m=0.5, cpu_max_gaussians=3000)
    cpu = splat.trainer_config(SplatParams(), settings, on_cuda=False)
    assert (cpu.max_gaussians, cpu.init_per_frame, cpu.sh_degree, cpu.device, cpu.backend) == (
        3000,
        500,
        0,
        "cpu",
        "tiles",
    )
    assert (cpu.near, cpu.far) == (0.1, 0.5)
    small = splat.trainer_config(SplatParams(max_gaussians=1200, sh_degree=1), settings, on_cuda=False)
    assert (small.max_gaussians, small.init_per_frame, small.sh_degree) == (1200, 200, 1)
    cuda = splat.trainer_config(SplatParams(), settings, on_cuda=True)
    assert (cuda.max_gaussians, cuda.init_per_frame, cuda.sh_degree, cuda.device) == (200_000, 2000, 3, "cuda")


def test_gsplat_only_with_cuda_and_prebuilt_kernels_and_never_imported_to_find_out() -> None:
    assert splat.backend(on_cuda=False) == "tiles"
    assert splat.gsplat_prebuilt() is False  # the venv's gsplat is the JIT wheel: no kernels built ahead
    assert splat.backend(on_cuda=True) == "tiles"
    code = (
        "import sys; from modal_workers.splat import workload; workload.gsplat_prebuilt(); "
        "print('gsplat' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


def test_bad_settings_fail_the_session_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPURELAY_SPLAT_FX", "400")
    with pytest.raises(PermanentError) as caught:
        splat.load_settings()
    assert caught.value.code == "invalid_settings"
    assert "GPURELAY_SPLAT_FY" in caught.value.message
