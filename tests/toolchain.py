"""Skip marker for tests that compile C++ (the SOFIE example): g++, make and OpenBLAS."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


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
