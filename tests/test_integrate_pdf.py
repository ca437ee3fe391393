"""The LHAPDF6 grid reader (hepgen.integrate.pdf): node values as the file has them, Pythia's own
values of the same grid between the nodes, the momentum sum rule, one-line errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hepgen.errors import InputError
from hepgen.integrate.pdf import PYTHIA_DEFAULT_SET, GridPDF, lhapdf_id, pythia_pdf_path

pythia8mc = pytest.importorskip("pythia8mc")


@pytest.fixture(scope="module")
def grid():
    return GridPDF(pythia_pdf_path(PYTHIA_DEFAULT_SET))


def _raw_block(path):
    """The first subgrid of a grid file, parsed here from the text: (xs, qs, pids, rows)."""
    lines = path.read_text().split("\n---")[1].strip().splitlines()
    xs, qs = np.array(lines[0].split(), float), np.array(lines[1].split(), float)
    pids = [int(p) for p in lines[2].split()]
    rows = np.array([line.split() for line in lines[3:]], float)
    return xs, qs, pids, rows


def test_grid_nodes_are_the_file_values(grid):
    xs, qs, pids, rows = _raw_block(grid.path)
    rng = np.random.default_rng(0)
    ix, iq = rng.integers(0, len(xs), 50), rng.integers(0, len(qs), 50)
    for pid in (2, -1, 21):
        got = grid.xfx(pid, torch.tensor(xs[ix]), torch.tensor(qs[iq] ** 2)).numpy()
        want = rows[ix * len(qs) + iq, pids.index(pid)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_matches_pythia_between_the_nodes(grid):
    """Pythia reads the same file (LHAGrid1) but interpolates its own way: in the x range of
    Drell-Yan at 60-120 GeV (x < 0.3) the light quarks agree within 3e-3 at every point (the
    largest differences are antiquarks near x = 0.3, where they are small), within 1e-4 at half
    of them and 3e-4 on average; the interpolation scheme is the only difference."""
    pythia = pythia8mc.Pythia("", False)
    for line in ("Print:quiet = on", f"PDF:pSet = LHAGrid1:{grid.path}", "SoftQCD:elastic = on"):
        assert pythia.readString(line)
    assert pythia.init()
    pdf = pythia.getPDFPtr(2212)
    rng = np.random.default_rng(1)
    x = 10 ** rng.uniform(-4.0, np.log10(0.3), 400)
    q2 = rng.uniform(60.0 ** 2, 120.0 ** 2, 400)
    for pid in (1, 2, -1, -2):
        ours = grid.xfx(pid, torch.tensor(x), torch.tensor(q2)).numpy()
        theirs = np.array([pdf.xf(pid, a, b) for a, b in zip(x, q2)])
        rel = np.abs(ours / theirs - 1)
        assert rel.max() < 3e-3, (pid, rel.max())
        assert np.median(rel) < 1e-4 and rel.mean() < 3e-4, (pid, np.median(rel), rel.mean())


def test_momentum_sum_rule(grid):
    """sum over partons of int_0^1 x f(x, Q^2) dx = 1 at Q = m_Z within 1 % (the part below the
    grid's x_min = 1e-9 is negligible; trapezoid in log x on 4000 points)."""
    logx = np.linspace(np.log(grid.x_min), 0.0, 4000)
    x = torch.tensor(np.exp(logx))
    q2 = torch.full_like(x, 91.1876 ** 2)
    pids = sorted({p for g in grid.subgrids for p in g.pids})
    total = sum(grid.xfx(p, x, q2).numpy() for p in pids)
    integral = np.trapezoid(total * np.exp(logx), logx)
    assert abs(integral - 1.0) < 0.01, integral


def test_frozen_outside_the_grid(grid):
    q2 = torch.tensor([100.0])
    assert grid.xfx(2, torch.tensor([grid.x_min / 10]), q2) == grid.xfx(2, torch.tensor([grid.x_min]), q2)
    assert grid.xfx(6, torch.tensor([0.1]), q2).item() == 0.0 or 6 in grid.subgrids[0].pids


def test_lhapdf_ids():
    assert lhapdf_id("NNPDF23_lo_as_0130_qed_0000.dat") == 247000
    assert lhapdf_id("somewhere/NNPDF31_lo_as_0118_0000.dat") == 315000
    assert lhapdf_id("mine.dat") == -1


@pytest.mark.parametrize("text", ["no header at all\n", "Format: lhagrid1\n---\n1e-3 1\n1 2\n1 2\n0.5\n---\n"])
def test_bad_grid_is_one_line(tmp_path, text):
    path = tmp_path / "bad.dat"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        GridPDF(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
