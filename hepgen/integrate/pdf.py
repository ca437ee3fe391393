"""Parton densities from an LHAPDF6 grid file (``lhagrid1``), with LHAPDF's log-bicubic interpolation.

A grid file (``NAME_0000.dat``, the format of the sets pythia8mc ships in
``share/Pythia8/pdfdata``) is a YAML header, then one or more subgrids separated by ``---``
lines. Each subgrid lists its x knots, its Q knots (GeV), the PDG ids of its flavours (21 the
gluon, 0 read as 21), then ``x f(x, Q)`` for every (x, Q) pair, x outer and Q inner, one row
per pair with one column per flavour.

:class:`GridPDF` ``.xfx(pid, x, q2)`` evaluates ``x f(x, Q^2)`` as LHAPDF6's default
``logcubic`` interpolator does: in the subgrid whose Q range holds Q (the higher one at a
shared edge), a cubic Hermite spline in ``log x`` between the neighbouring knots at four
neighbouring Q^2 knots, with knot derivatives the mean of the left and right difference
quotients (one-sided at the first and last knot), then a cubic Hermite spline in ``log Q^2``
with derivatives built the same way from those four values. Outside the grid the values are
frozen at its edge (x and Q^2 clamped, LHAPDF's ``nearest`` extrapolation). Everything is
float64 torch.

:func:`pythia_pdf_path` finds a set by file name in Pythia's data folder; Pythia's default
proton set (``PDF:pSet = 13``) is :data:`PYTHIA_DEFAULT_SET`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CardError, InputError

PYTHIA_DEFAULT_SET = "NNPDF23_lo_as_0130_qed_0000.dat"  # PDF:pSet = 13, NNPDF2.3 QCD+QED LO
# LHAPDF ids of the LO sets Pythia ships (the LHE header's PDFSUP), by set name
LHAPDF_IDS = {"NNPDF23_lo_as_0130_qed": 247000, "NNPDF31_lo_as_0118": 315000, "NNPDF31_lo_as_0130": 315200}


def pythia_data_folder() -> Path:
    """Pythia's ``pdfdata`` folder (``$PYTHIA8DATA/../pdfdata``, else the one pythia8mc installs)."""
    env = os.environ.get("PYTHIA8DATA")
    if env:
        return Path(env).parent / "pdfdata"
    import pythia8mc  # the wheel puts share/Pythia8 under the environment's prefix

    for base in (Path(pythia8mc.__file__).parents[3], Path(pythia8mc.__file__).parent):
        folder = base / "share" / "Pythia8" / "pdfdata"
        if folder.is_dir():
            return folder
    raise InputError("cannot find Pythia's pdfdata folder; set PYTHIA8DATA")


def pythia_pdf_path(name: str) -> Path:
    """A grid file: ``name`` as a path when it exists, else that file in Pythia's data folder."""
    path = Path(name)
    if path.is_file():
        return path
    found = pythia_data_folder() / name
    if not found.is_file():
        raise CardError(f"PDF grid {name!r} is neither a file nor in Pythia's data folder {found.parent}")
    return found


def lhapdf_id(name: str) -> int:
    """The LHAPDF id of a grid file's set (member 0), -1 when not known here."""
    stem = Path(name).name.removesuffix(".dat")
    return LHAPDF_IDS.get(stem.removesuffix("_0000"), -1) if stem.endswith("_0000") else -1


class _Subgrid:
    """One block of a grid: knots in log x and log Q^2, values ``[n_flavours, n_x, n_q]``."""

    def __init__(self, xs: np.ndarray, qs: np.ndarray, pids: list[int], values: np.ndarray):
        self.logx = torch.as_tensor(np.log(xs), dtype=torch.float64)
        self.logq2 = torch.as_tensor(np.log(qs ** 2), dtype=torch.float64)
        self.q2_min, self.q2_max = float(qs[0] ** 2), float(qs[-1] ** 2)
        self.pids = [21 if p == 0 else p for p in pids]
        grid = torch.as_tensor(values.reshape(len(xs), len(qs), len(pids)), dtype=torch.float64)
        self.values = grid.permute(2, 0, 1).contiguous()
        self.dlogx = _knot_derivatives(self.values, self.logx)  # d xf / d log x at the knots


def _knot_derivatives(values: torch.Tensor, logx: torch.Tensor) -> torch.Tensor:
    """LHAPDF's ``_ddx`` along axis 1: mean of the neighbouring difference quotients."""
    q = (values[:, 1:] - values[:, :-1]) / (logx[1:] - logx[:-1])[None, :, None]
    out = torch.empty_like(values)
    out[:, 0], out[:, -1] = q[:, 0], q[:, -1]
    out[:, 1:-1] = 0.5 * (q[:, 1:] + q[:, :-1])
    return out


def _hermite(t, v0, d0, v1, d1):
    t2, t3 = t * t, t * t * t
    return (2 * t3 - 3 * t2 + 1) * v0 + (t3 - 2 * t2 + t) * d0 + (-2 * t3 + 3 * t2) * v1 + (t3 - t2) * d1


class GridPDF:
    """``x f(x, Q^2)`` of one grid file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.subgrids = _read_grid(self.path)
        self.x_min = float(self.subgrids[0].logx[0].exp())
        self.x_max = float(self.subgrids[0].logx[-1].exp())
        self.q2_min = self.subgrids[0].q2_min
        self.q2_max = self.subgrids[-1].q2_max

    def xfx(self, pid: int, x: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """``x f_pid(x, Q^2)``, float64 ``[N]`` for ``x``, ``q2`` (GeV^2) ``[N]``; 0 for a flavour
        the grid lacks."""
        x = torch.as_tensor(x, dtype=torch.float64).clamp(self.x_min, self.x_max)
        q2 = torch.as_tensor(q2, dtype=torch.float64).clamp(self.q2_min, self.q2_max)
        out = torch.zeros_like(x)
        which = torch.zeros_like(x, dtype=torch.long)
        for k, g in enumerate(self.subgrids):  # the last subgrid whose lower edge is below q2
            which[q2 >= g.q2_min] = k
        for k, g in enumerate(self.subgrids):
            sel = which == k
            if pid in g.pids and bool(sel.any()):
                out[sel] = _interpolate(g, g.pids.index(pid), x[sel].log(), q2[sel].log())
        return out


def _interpolate(g: _Subgrid, f: int, logx: torch.Tensor, logq2: torch.Tensor) -> torch.Tensor:
    nx, nq = len(g.logx), len(g.logq2)
    ix = (torch.searchsorted(g.logx, logx, right=True) - 1).clamp(0, nx - 2)
    iq = (torch.searchsorted(g.logq2, logq2, right=True) - 1).clamp(0, nq - 2)
    dlx = g.logx[ix + 1] - g.logx[ix]
    tx = (logx - g.logx[ix]) / dlx
    vals, ders = g.values[f], g.dlogx[f]

    def in_x(j):  # the x spline at Q knot j (clamped into the grid; unused where out of range)
        j = j.clamp(0, nq - 1)
        return _hermite(tx, vals[ix, j], ders[ix, j] * dlx, vals[ix + 1, j], ders[ix + 1, j] * dlx)

    vl, vh = in_x(iq), in_x(iq + 1)
    vll, vhh = in_x(iq - 1), in_x(iq + 2)
    lq = g.logq2
    d1 = lq[iq + 1] - lq[iq]
    d0 = lq[iq] - lq[(iq - 1).clamp(min=0)]
    d2 = lq[(iq + 2).clamp(max=nq - 1)] - lq[iq + 1]
    mid = (vh - vl) / d1
    first, last = iq == 0, iq + 1 == nq - 1
    left = torch.where(first, mid, 0.5 * (mid + (vl - vll) / torch.where(first, d1, d0)))
    right = torch.where(last, mid, 0.5 * (mid + (vhh - vh) / torch.where(last, d1, d2)))
    tq = (logq2 - lq[iq]) / d1
    return _hermite(tq, vl, left * d1, vh, right * d1)


def _read_grid(path: Path) -> list[_Subgrid]:
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"cannot read PDF grid {path}: {err.strerror or err}") from None
    blocks = [b.strip() for b in text.split("\n---")]
    if len(blocks) < 2 or "lhagrid1" not in blocks[0].lower():
        raise InputError(f"{path} is not an LHAPDF6 grid file (Format: lhagrid1)")
    grids = []
    for block in blocks[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        try:
            xs, qs = (np.array(lines[i].split(), dtype=np.float64) for i in (0, 1))
            pids = [int(p) for p in lines[2].split()]
            values = np.array(" ".join(lines[3:]).split(), dtype=np.float64)
        except (IndexError, ValueError):
            raise InputError(f"{path}: malformed subgrid (knots, flavours, values)") from None
        if values.size != len(xs) * len(qs) * len(pids) or len(xs) < 2 or len(qs) < 2:
            raise InputError(f"{path}: a subgrid holds {values.size} values, not "
                             f"{len(xs)} x {len(qs)} x {len(pids)}")
        grids.append(_Subgrid(xs, qs, pids, values))
    if not grids:
        raise InputError(f"{path}: no subgrids")
    return grids
