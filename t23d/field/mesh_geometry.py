"""Explicit mesh geometry for the refine stage: fixed connectivity, learnt per-vertex offsets.

The mesh starts as the surface extracted from the stage-1 field by the export stage's
:func:`t23d.extract.extract_mesh` (density or SDF geometry alike) and is deformed by an offset per
vertex, ``v = base + offset`` (Magic3D's second stage uses DMTet; an explicit mesh is simpler, cheaper
on CPU, and its extraction is exactly the one the export stage already validates).

Two regularisers keep it a clean surface while SDS pulls on it:

- :meth:`DeformableMesh.laplacian_loss`: the uniform Laplacian of the *offsets* (each offset against
  the mean of its neighbours'), in units of the mean edge length, so the offsets vary smoothly without
  smoothing away the stage-1 shape itself;
- :meth:`DeformableMesh.normal_consistency_loss`: ``1 - cos`` between the normals of the two faces of
  every interior edge (creases and noise cost, smooth bends are cheap).

Conventions: world frame +Z up, faces counter-clockwise seen from outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def face_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unit face normals [F, 3] (right-hand rule), differentiable."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    return F.normalize(torch.linalg.cross(v1 - v0, v2 - v0), dim=-1, eps=1e-20)


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted unit vertex normals [V, 3], differentiable."""
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0)  # [F, 3], length = 2 * area
    vn = torch.zeros_like(vertices)
    for k in range(3):
        vn = vn.index_add(0, faces[:, k], fn)
    return F.normalize(vn, dim=-1, eps=1e-20)


def mesh_edges(faces: Tensor) -> tuple[Tensor, Tensor]:
    """Unique undirected edges [E, 2] and, for interior edges, the two faces sharing each one [E_int, 2]."""
    f = faces.long()
    num_v = int(f.max()) + 1 if len(f) else 0
    a = torch.cat([f[:, 0], f[:, 1], f[:, 2]])
    b = torch.cat([f[:, 1], f[:, 2], f[:, 0]])
    face_of = torch.arange(len(f), device=f.device).repeat(3)
    key = torch.minimum(a, b) * num_v + torch.maximum(a, b)
    order = torch.argsort(key, stable=True)
    sk, sf = key[order], face_of[order]
    first = torch.ones_like(sk, dtype=torch.bool)
    first[1:] = sk[1:] != sk[:-1]
    uniq = sk[first]
    edges = torch.stack([uniq // num_v, uniq % num_v], 1)
    pair = torch.nonzero(first[:-1] & ~first[1:]).reshape(-1)  # group starts followed by a second entry
    face_pairs = torch.stack([sf[pair], sf[pair + 1]], 1)
    return edges, face_pairs


class DeformableMesh(nn.Module):
    """A triangle mesh whose vertices move by learnt offsets: ``vertices() = base + offsets``."""

    def __init__(self, base_vertices: Tensor, faces: Tensor) -> None:
        """``base_vertices`` [V, 3] float, ``faces`` [F, 3] integer (counter-clockwise from outside)."""
        super().__init__()
        self.register_buffer("base_vertices", base_vertices.detach().float().clone())
        self.register_buffer("faces", faces.detach().long().clone())
        self.offsets = nn.Parameter(torch.zeros_like(self.base_vertices))
        edges, face_pairs = mesh_edges(self.faces)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("face_pairs", face_pairs, persistent=False)
        deg = torch.zeros(len(base_vertices), device=edges.device)
        deg = deg.index_add(0, edges.reshape(-1), torch.ones(edges.numel(), device=edges.device))
        self.register_buffer("degree", deg.clamp(min=1.0), persistent=False)
        e = self.base_vertices[edges[:, 0]] - self.base_vertices[edges[:, 1]]
        self.mean_edge_length = float(e.norm(dim=-1).mean()) if len(e) else 1.0

    @property
    def num_vertices(self) -> int:
        """Vertex count."""
        return int(self.base_vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """Triangle count."""
        return int(self.faces.shape[0])

    def vertices(self) -> Tensor:
        """Current positions [V, 3] (differentiable w.r.t. the offsets)."""
        return self.base_vertices + self.offsets

    def laplacian_loss(self) -> Tensor:
        """Mean squared uniform Laplacian of the offsets, divided by the squared mean edge length."""
        o = self.offsets
        e0, e1 = self.edges[:, 0], self.edges[:, 1]
        neighbour_sum = torch.zeros_like(o).index_add(0, e0, o[e1]).index_add(0, e1, o[e0])
        lap = o - neighbour_sum / self.degree[:, None]
        return (lap.square().sum(-1)).mean() / self.mean_edge_length**2

    def normal_consistency_loss(self, vertices: Tensor | None = None) -> Tensor:
        """Mean ``1 - cos`` between the normals of the two faces of each interior edge."""
        v = self.vertices() if vertices is None else vertices
        if len(self.face_pairs) == 0:
            return v.sum() * 0.0
        n = face_normals(v, self.faces)
        cos = (n[self.face_pairs[:, 0]] * n[self.face_pairs[:, 1]]).sum(-1)
        return (1.0 - cos).mean()
