"""View-dependent prompts: "a stone grotto, front view" (DreamFusion, stable-dreamfusion, threestudio)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from t23d.common.errors import ConfigError, T23dError
from t23d.prompt.config import ViewPromptConfig

if TYPE_CHECKING:
    import torch

VIEW_NAMES: tuple[str, str, str, str] = ("front", "side", "back", "overhead")
"""Name of each view index returned by :func:`view_index`."""

FRONT, SIDE, BACK, OVERHEAD = 0, 1, 2, 3

_EMPTY_PROMPT_MESSAGE = "prompt is empty; pass a description such as 't23d generate \"stone grotto\"'"


def validate_prompt(prompt: str) -> str:
    """Return ``prompt`` stripped of surrounding whitespace; raise :class:`T23dError` if it is empty."""
    if not isinstance(prompt, str):
        raise T23dError(f"prompt must be a string, got {type(prompt).__name__}")
    stripped = prompt.strip()
    if not stripped:
        raise T23dError(_EMPTY_PROMPT_MESSAGE)
    return stripped


def _check_config(cfg: ViewPromptConfig) -> None:
    for name in ("front_azimuth_deg", "back_azimuth_deg"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 180.0:
            raise ConfigError(
                f"config key 'view_prompts.{name}': invalid value {value!r}; accepted: 0 to 180"
            )
    if cfg.front_azimuth_deg + cfg.back_azimuth_deg > 180.0:
        raise ConfigError(
            "config keys 'view_prompts.front_azimuth_deg' + 'view_prompts.back_azimuth_deg' = "
            f"{cfg.front_azimuth_deg + cfg.back_azimuth_deg!r} exceed 180 (front and back regions overlap)"
        )
    if not -90.0 <= cfg.overhead_elevation_deg <= 90.0:
        raise ConfigError(
            f"config key 'view_prompts.overhead_elevation_deg': invalid value {cfg.overhead_elevation_deg!r}; "
            "accepted: -90 to 90"
        )


def view_prompts(prompt: str, cfg: ViewPromptConfig) -> list[str]:
    """The prompts indexed by :func:`view_index`.

    Returns ``[front, side, back, overhead]`` prompts (e.g. ``"a stone grotto, front view"``) when
    ``cfg.enabled``, else the single plain prompt ``[prompt]`` (and :func:`view_index` then returns 0).
    Raises :class:`T23dError` for an empty or whitespace-only prompt.
    """
    prompt = validate_prompt(prompt)
    _check_config(cfg)
    if not cfg.enabled:
        return [prompt]
    suffixes = (cfg.front_suffix, cfg.side_suffix, cfg.back_suffix, cfg.overhead_suffix)
    return [prompt + suffix for suffix in suffixes]


def wrap_azimuth_deg(azimuth_deg: torch.Tensor) -> torch.Tensor:
    """Wrap azimuths in degrees to (-180, 180]. ``[B] -> [B]``."""
    wrapped = azimuth_deg - 360.0 * (azimuth_deg / 360.0).round()  # [-180, 180]
    return wrapped.where(wrapped != -180.0, wrapped.new_tensor(180.0))


def view_index(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, cfg: ViewPromptConfig) -> torch.Tensor:
    """View region of each camera: 0 front, 1 side, 2 back, 3 overhead (see :class:`ViewPromptConfig`).

    Args:
        azimuth_deg: ``[B]`` azimuths in degrees, 0 = front; any value (wrapped to (-180, 180]).
        elevation_deg: ``[B]`` elevations in degrees above the horizontal.
        cfg: region thresholds.

    Returns:
        ``[B]`` int64 indices into :func:`view_prompts` (all 0 when ``cfg.enabled`` is False).
    """
    import torch

    _check_config(cfg)
    azimuth_deg = torch.as_tensor(azimuth_deg)
    elevation_deg = torch.as_tensor(elevation_deg)
    if azimuth_deg.ndim != 1 or elevation_deg.shape != azimuth_deg.shape:
        raise T23dError(
            f"view_index expects azimuth_deg and elevation_deg of shape [B]; got {tuple(azimuth_deg.shape)} "
            f"and {tuple(elevation_deg.shape)}"
        )
    index = torch.full(azimuth_deg.shape, SIDE, dtype=torch.long, device=azimuth_deg.device)  # [B]
    if not cfg.enabled:
        return torch.zeros_like(index)
    abs_azimuth = wrap_azimuth_deg(azimuth_deg.double()).abs()  # [B] in [0, 180]
    index[abs_azimuth < cfg.front_azimuth_deg] = FRONT
    index[abs_azimuth > 180.0 - cfg.back_azimuth_deg] = BACK
    index[elevation_deg > cfg.overhead_elevation_deg] = OVERHEAD
    return index
