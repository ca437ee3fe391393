"""Skip marker for tests that compile C++ (the SOFIE example): g++, make and OpenBLAS."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _have_blas() -> bool:
    """g++ can link a program against OpenBLAS (the SOFIE example needs sgemm_)."""
    if shutil.which("g++") is None:
        return False
    probe = 'extern "C" void sgemm_(); int main() { sgemm_(); }'
    run = subprocess.run(["g++", "-x", "c++", "-", "-o", os.devnull, "-lopenblas"], input=probe, text=True,
                         capture_output=True)
    return run.returncode == 0


needs_cpp = pytest.mark.skipif(shutil.which("g++") is None or shutil.which("make") is None or not _have_blas(),
                               reason="needs g++, make and OpenBLAS (apt-get install libopenblas-dev)")


def sofie_outputs(export_dir: Path, inputs: np.ndarray, tmp: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Build the SOFIE C++ consumer (export/sofie) for ``export_dir`` and run it on the float32
    ``inputs`` ``[N, ...]`` (as its --noise file): its first output, ``[draws, N, *shape]``.
    Skips the test when the export has no SOFIE header."""
    if not (export_dir / "sofie" / "generator.hxx").exists():
        pytest.skip("no SOFIE header (the sofie package is not installed)")
    build = tmp / "build"
    subprocess.run(["make", "-s", "-C", str(REPO / "export/sofie"), f"EXPORT={export_dir}", f"BUILD={build}"],
                   check=True, capture_output=True)
    n = len(inputs)
    inputs.astype(np.float32).tofile(tmp / "inputs.f32")
    subprocess.run([str(build / "generate_events"), str(export_dir), "-o", str(tmp / "ev"), "-n", str(n),
                    "--noise", str(tmp / "inputs.f32")], check=True, capture_output=True)
    return np.fromfile(tmp / "ev.out0.f32", dtype=np.float32).reshape(-1, n, *shape)
