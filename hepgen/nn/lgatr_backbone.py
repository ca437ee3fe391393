"""The Lorentz-equivariant L-GATr backbone of the CFM velocity field (``network.backbone: lgatr``).

"Lorentz-equivariant network, non-equivariant coordinates": the flow's state stays the
network coordinates x ``[N, D]`` of Z -> mu mu + jets (:class:`hepgen.coords.zjets.ZJetsCoords`,
D = 5 + 4 J), and only the velocity field looks at four-momenta. Inside it:

1. x is decoded to four-momenta ``[N, P, 4]`` (E, px, py, pz; GeV; P = 2 + J particles, muon 1
   at azimuth 0) with the fitted coordinates' ``momenta(x)`` (differentiable, exportable), given
   by :meth:`LGATrBackbone.attach_coords` (a plain reference: the coordinates are saved apart);
2. every particle is a token of the ``lgatr.LGATrSlim`` transformer (the ``lgatr`` package, used
   as a library): its Lorentz vectors are p / ``momentum_scale`` and the reference vectors
   ("spurions", ``lgatr.get_spurions``: the beam axis and the lab time direction, the same for
   every token), its scalars the condition (time embedding and jet multiplicity), a one-hot
   token type (muon 1, muon 2, jet 1, ...) and the token's own network coordinates;
3. each token's output scalars go through a linear head (Bayesian with ``bayes.enabled``) to its
   velocity components in x (muon 1: 2 columns, muon 2: 3, each jet: 4).

Absent jets (``mask``: the columns of present objects under the one-hot multiplicity, as CFM's
frozen columns) enter as zero vectors with zero coordinates, and the attention ignores them (a
boolean attention mask), so present tokens never see them.

Symmetry: the network's outputs are Lorentz invariants of all its vector inputs together
(momenta and spurions), since L-GATr is Lorentz-equivariant and only its scalar channels are
read. With the spurions fixed, they are invariant only under the transformations that leave
every spurion alone: with the default (lightlike beam (1, 0, 0, +-1) and the time direction)
the rotations about the beam axis, as for the detector; a boost along the beam rescales the
lightlike beam vectors and moves the time direction, so it changes the outputs.
tests/test_lgatr.py checks both, and the full equivariance with the spurions transformed too.
"""

from __future__ import annotations

import torch
from torch import nn

from ..cards import ModelConfig
from ..errors import CardError
from .blocks import linear

# absurd momenta (a sampler far off the data, a pT2 that the dimuon-mass inverse sends to
# infinity) are clipped to this many momentum_scale units, so no inf reaches the attention
MAX_COMPONENT = 1e4


def _lgatr():
    try:
        import lgatr
    except ImportError:
        raise CardError("model.network.backbone lgatr needs the lgatr package: pip install 'hepgen[lgatr]'") from None
    return lgatr


def token_columns(dim: int) -> list[list[int]]:
    """The network columns of each particle token in the Z+jets layout (D = 5 + 4 J): muon 1
    ``[0, 1]``, muon 2 ``[2, 3, 4]``, jet j ``[5 + 4 j, ..., 8 + 4 j]``."""
    if dim < 9 or (dim - 5) % 4:
        raise CardError(f"model.network.backbone lgatr needs the Z+jets layout of 5 + 4 J network coordinates "
                        f"(process zjets); this process has {dim}")
    return [[0, 1], [2, 3, 4]] + [list(range(5 + 4 * j, 9 + 4 * j)) for j in range((dim - 5) // 4)]


class LGATrBackbone(nn.Module):
    """x ``[N, D]``, cond ``[N, cond_dim]``, mask ``[N, D]`` or None -> v ``[N, D]``.

    ``cond`` is what the velocity field conditions on (time embedding then the one-hot jet
    multiplicity); ``mask`` 1 / 0 for the columns of present / absent objects (None: all present).
    """

    takes_mask = True

    def __init__(self, dim: int, cfg: ModelConfig, cond_dim: int = 0):
        super().__init__()
        lgatr = _lgatr()
        if cfg.bayes.enabled and cfg.bayes.layers == "all":
            raise CardError("model.bayes.layers all: the L-GATr layers are not Bayesian; with backbone lgatr use "
                            "bayes.layers last (a Bayesian output head)")
        lc = cfg.lgatr
        cols = token_columns(dim)
        self.dim, self.tokens, self.scale = dim, len(cols), float(lc.momentum_scale)
        # gather x (padded with one zero column, index dim) into [N, P, 4] token slots, and back
        slot = torch.full((self.tokens, 4), dim, dtype=torch.long)
        back = torch.zeros(dim, dtype=torch.long)
        for k, cs in enumerate(cols):
            slot[k, :len(cs)] = torch.tensor(cs)
            back[cs] = torch.arange(k * 4, k * 4 + len(cs))
        self.register_buffer("slot", slot.reshape(-1), persistent=False)
        self.register_buffer("back", back, persistent=False)
        self.register_buffer("first", torch.tensor([cs[0] for cs in cols]), persistent=False)
        self.register_buffer("types", torch.eye(self.tokens), persistent=False)
        beam = None if lc.beam == "none" else lc.beam
        spurions = lgatr.extract_vector(lgatr.get_spurions(beam, lc.time_reference, beam_mirror=True,
                                                           dtype=torch.float64))
        self.register_buffer("spurions", spurions.float(), persistent=False)  # [S, 4]
        self.net = lgatr.LGATrSlim(num_blocks=lc.blocks, in_v_channels=1 + len(spurions), out_v_channels=0,
                                   hidden_v_channels=lc.vectors, in_s_channels=cond_dim + self.tokens + 4,
                                   out_s_channels=lc.scalars, hidden_s_channels=lc.scalars, num_heads=lc.heads)
        self.out = linear(lc.scalars, 4, cfg.bayes, bayesian=True)
        with torch.no_grad():  # start near v = 0, as the other backbones
            (self.out.weight_mu if hasattr(self.out, "weight_mu") else self.out.weight).mul_(0.01)
        self.__dict__["_coords"] = None

    def attach_coords(self, coords: nn.Module) -> None:
        """Keep a plain reference to the fitted coordinates (they need ``momenta(x)``)."""
        if not callable(getattr(coords, "momenta", None)):
            raise CardError(f"model.network.backbone lgatr needs coordinates with four-momenta (Z+jets); "
                            f"{type(coords).__name__} has none")
        if getattr(coords, "dim", None) != self.dim:
            raise CardError(f"model.network.backbone lgatr: the coordinates have {coords.dim} columns, the network "
                            f"{self.dim}")
        self.__dict__["_coords"] = coords

    def momenta(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[N, D]`` -> four-momenta ``[N, P, 4]`` in units of ``momentum_scale`` (clipped)."""
        coords = self.__dict__["_coords"]
        if coords is None:
            raise RuntimeError("the lgatr backbone has no coordinates: call Generator.attach_coords first")
        return torch.clamp(coords.momenta(x) / self.scale, -MAX_COMPONENT, MAX_COMPONENT)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        present = None if mask is None else torch.index_select(mask, 1, self.first)  # [N, P]
        return self.tokens_forward(self.momenta(x), x, cond, present)

    def tokens_forward(self, p: torch.Tensor, x: torch.Tensor, cond: torch.Tensor,
                       present: torch.Tensor | None = None, spurions: torch.Tensor | None = None) -> torch.Tensor:
        """The network on given momenta p ``[N, P, 4]`` (scaled units) and reference vectors
        (``spurions`` ``[S, 4]``; default: the card's): v ``[N, D]``. Tests transform p and the
        spurions here to check the symmetry."""
        n, dt = x.shape[0], x.dtype
        s = (self.spurions if spurions is None else spurions).to(dt)
        xt = torch.index_select(torch.cat([x, torch.zeros_like(x[:, :1])], -1), 1, self.slot).reshape(n, self.tokens, 4)
        if present is not None:
            present = present.to(dt)
            p, xt = p * present.unsqueeze(-1), xt * present.unsqueeze(-1)
        # broadcasts by adding zeros rather than Expand (no shape arithmetic in the exported graph)
        zero = torch.zeros_like(xt[..., :1])  # [N, P, 1]
        vectors = torch.cat([p.unsqueeze(2), s + zero.unsqueeze(-1)], 2)  # [N, P, 1 + S, 4]
        scalars = torch.cat([cond.unsqueeze(1) + zero, self.types.to(dt) + zero, xt], -1)
        kw = {}
        if present is not None:  # keys of absent tokens are masked out: [N, 1 (heads), 1 (queries), P]
            kw["attn_mask"] = (present > 0.5).unsqueeze(1).unsqueeze(1)
        _, out = self.net(vectors, scalars, **kw)
        v = self.out(out).reshape(n, self.tokens * 4)
        return torch.index_select(v, 1, self.back)
