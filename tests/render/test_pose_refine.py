"""Pose corrections and pose errors."""

from __future__ import annotations

import math

import numpy as np
import torch

from t23d.data.synthetic import orbit_poses
from t23d.render.pose_refine import PoseCorrections, axis_angle_to_matrix, pose_errors


def test_axis_angle_matches_the_matrix_exponential_with_gradients_at_zero():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [1e-5, 0.0, 2e-5], [0.0, 0.0, math.pi / 2]])
    r = axis_angle_to_matrix(w)
    skew = torch.zeros(4, 3, 3)
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    skew = skew - skew.transpose(1, 2)
    assert torch.allclose(r, torch.linalg.matrix_exp(skew), atol=1e-6)
    assert torch.allclose(r[3] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    z = torch.zeros(1, 3, requires_grad=True)
    (axis_angle_to_matrix(z)[0, 1, 0]).backward()  # d R_10 / d w_z = 1 at zero
    assert torch.allclose(z.grad, torch.tensor([[0.0, 0.0, 1.0]]))


def test_corrections_start_as_identity_and_act_in_the_camera_frame():
    c2w = torch.from_numpy(orbit_poses(4)).float()
    poses = PoseCorrections(4)
    assert torch.allclose(poses(c2w), c2w)
    with torch.no_grad():
        poses.correction[1, 3:] = torch.tensor(
            [0.0, 0.0, -0.5]
        )  # half a unit along the camera's -Z (forward)
    moved = poses(c2w)
    forward = -c2w[1, :3, 2]
    assert torch.allclose(moved[1, :3, 3], c2w[1, :3, 3] + 0.5 * forward, atol=1e-6)
    rot, shift = poses.magnitudes(c2w)
    assert shift[1] == torch.tensor(0.5) and rot.abs().max() == 0


def test_pose_errors_ignore_a_global_similarity_and_see_per_camera_errors():
    true = orbit_poses(12, radius=3.0)
    g = np.eye(4)
    g[:3, :3] = axis_angle_to_matrix(torch.tensor([[0.2, 0.5, -0.1]], dtype=torch.float64))[0].numpy()
    g[:3, 3] = [1.0, -2.0, 0.5]
    moved = g[None] @ true
    moved[:, :3, 3] *= 1.7  # and scaled: rotation, translation and scale are not errors
    moved[:, :3, 3] += 0.0
    err = pose_errors(moved, true)
    assert err["rotation_deg"] < 1e-6 and err["position"] < 1e-9
    noisy = true.copy()
    turn = axis_angle_to_matrix(torch.tensor([[0.0, math.radians(1.0), 0.0]], dtype=torch.float64))[0].numpy()
    noisy[::2, :3, :3] = noisy[::2, :3, :3] @ turn  # half the cameras turned by 1 degree
    assert abs(pose_errors(noisy, true)["rotation_deg"] - 0.5) < 1e-6
