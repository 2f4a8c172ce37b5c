"""Mesh geometry of the refine stage: topology, normals and the two regularisers."""

from __future__ import annotations

import pytest
import torch

from t23d.field.mesh_geometry import DeformableMesh, mesh_edges, vertex_normals


def _tetra():
    v = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])  # counter-clockwise from outside
    return v, f


def _grid(n=5, bend=0.0):
    """A flat n x n vertex grid in the z = 0 plane, optionally folded along x = 0 by ``bend`` (z = bend |x|)."""
    xs = torch.linspace(-1, 1, n)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    v = torch.stack([xx, yy, bend * xx.abs()], -1).reshape(-1, 3)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            faces += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]
    return v, torch.tensor(faces)


def test_edges_and_face_pairs_of_a_tetrahedron():
    _, f = _tetra()
    edges, pairs = mesh_edges(f)
    assert len(edges) == 6 and len(pairs) == 6  # closed: every edge is shared by two faces
    assert sorted(map(tuple, edges.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_vertex_normals_point_outwards():
    v, f = _tetra()
    n = vertex_normals(v, f)
    assert torch.allclose(n, v / v.norm(dim=-1, keepdim=True), atol=1e-6)


def test_laplacian_is_zero_for_a_rigid_shift_and_positive_for_a_bump():
    v, f = _grid()
    mesh = DeformableMesh(v, f)
    with torch.no_grad():
        mesh.offsets[:] = torch.tensor([0.3, -0.2, 0.1])
    assert float(mesh.laplacian_loss()) == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        mesh.offsets.zero_()
        mesh.offsets[12, 2] = 0.5  # the centre vertex
    assert mesh.laplacian_loss() > 0.01
    mesh.laplacian_loss().backward()
    assert mesh.offsets.grad[12, 2] > 0  # descending pulls the bump back down


def test_normal_consistency_is_zero_when_flat_and_grows_with_the_fold():
    flat = DeformableMesh(*_grid())
    assert float(flat.normal_consistency_loss()) == pytest.approx(0.0, abs=1e-7)
    small, large = DeformableMesh(*_grid(bend=0.2)), DeformableMesh(*_grid(bend=1.0))
    assert 0 < small.normal_consistency_loss() < large.normal_consistency_loss()
