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


def build_sofie(export_dir: Path, build: Path) -> Path:
    """Build the SOFIE C++ consumer (export/sofie) for ``export_dir`` into ``build``; returns ``build``
    (its program is ``build / "generate_events"``).

    -O0: the tests check the generated code's numbers, not its speed. At the Makefile's -O2, g++ took
    160 s for the tt̄ map's header and 120 s for the unfolding one (the slowest tests of the suite);
    at -O0 6 s and 46 s, with the same tolerances passing."""
    subprocess.run(["make", "-s", "-C", str(REPO / "export/sofie"), f"EXPORT={export_dir}", f"BUILD={build}",
                    "CXXFLAGS=-O0"], check=True, capture_output=True)
    return build


def sofie_outputs(export_dir: Path, inputs: np.ndarray, tmp: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Build the SOFIE C++ consumer (export/sofie) for ``export_dir`` and run it on the float32
    ``inputs`` ``[N, ...]`` (as its --noise file): its first output, ``[draws, N, *shape]``.
    Skips the test when the export has no SOFIE header."""
    if not (export_dir / "sofie" / "generator.hxx").exists():
        pytest.skip("no SOFIE header (the sofie package is not installed)")
    build = build_sofie(export_dir, tmp / "build")
    n = len(inputs)
    inputs.astype(np.float32).tofile(tmp / "inputs.f32")
    subprocess.run([str(build / "generate_events"), str(export_dir), "-o", str(tmp / "ev"), "-n", str(n),
                    "--noise", str(tmp / "inputs.f32")], check=True, capture_output=True)
    return np.fromfile(tmp / "ev.out0.f32", dtype=np.float32).reshape(-1, n, *shape)


VENDORED_ORT = REPO.parent / "shared" / "vendor" / "onnxruntime-1.23.2"


def onnxruntime_root(tmp: Path) -> Path:
    """An ``ONNXRUNTIME_ROOT`` for building the ONNX Runtime C++ consumer (export/onnxruntime):
    ``$ONNXRUNTIME_ROOT`` when set, else a layout in ``tmp`` made of the vendored C/C++ API headers
    (../shared/vendor/onnxruntime-1.23.2, see its README) and the onnxruntime wheel's library
    under both names the build and the loader ask for. Skips the test only when neither exists."""
    if os.environ.get("ONNXRUNTIME_ROOT"):
        return Path(os.environ["ONNXRUNTIME_ROOT"])
    if not (VENDORED_ORT / "include" / "onnxruntime_cxx_api.h").is_file():
        pytest.skip(f"no ONNX Runtime C++ headers: {VENDORED_ORT} is absent and ONNXRUNTIME_ROOT is not set")
    import onnxruntime

    libs = sorted((Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.1*"))
    assert libs, "the onnxruntime wheel has no capi/libonnxruntime.so.1*"
    root = tmp / "onnxruntime"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(VENDORED_ORT / "include")
    for name in ("libonnxruntime.so", "libonnxruntime.so.1"):
        (root / "lib" / name).symlink_to(libs[0])
    return root
