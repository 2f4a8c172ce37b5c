"""Which guidance config a prior needs, read from its ``model_index.json`` (no torch, no diffusers).

A diffusers pipeline folder (or hub repository) names its pipeline class in ``model_index.json``
(``"_class_name": "IFPipeline"``). ``t23d generate --prior X`` uses it to pick the guidance config
class, so a DeepFloyd IF folder passed with ``--prior`` loads as DeepFloyd IF without
``--config configs/deepfloyd-if.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Optional

from t23d.common.errors import T23dError
from t23d.guidance.config import (
    DeepFloydGuidanceConfig,
    GuidanceConfig,
    MVDreamGuidanceConfig,
    StableDiffusionGuidanceConfig,
    Zero123GuidanceConfig,
)

logger = logging.getLogger(__name__)

PIPELINE_CONFIGS: dict[str, type] = {
    "StableDiffusionPipeline": StableDiffusionGuidanceConfig,
    "IFPipeline": DeepFloydGuidanceConfig,
    "MVDreamPipeline": MVDreamGuidanceConfig,
    "Zero123Pipeline": Zero123GuidanceConfig,  # ashawkey/zero123-xl-diffusers, stable-zero123-diffusers
    "Zero1to3StableDiffusionPipeline": Zero123GuidanceConfig,  # kxic/zero123-xl, bennyguo/...
}
"""Pipeline class named by ``model_index.json`` -> the guidance config class that loads it."""


def read_pipeline_class(pretrained: str, local_files_only: Optional[bool] = None) -> Optional[str]:
    """The ``_class_name`` of ``pretrained``'s ``model_index.json``, or None when it cannot be read.

    A local folder is read directly (None when it has no ``model_index.json``: the loader then says what
    is missing). A hub id is looked up through the hub cache, or the hub when online; None when that
    fails (offline and not cached, gated, not found): the loader reports that failure with its fix.

    Raises:
        T23dError: the folder's ``model_index.json`` exists but is not a JSON object with a ``_class_name``.
    """
    path = Path(pretrained).expanduser()
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            return None
        return _class_name(index)
    if path.exists():
        return None
    from t23d.guidance.loading import _looks_like_path, hub_cache_dir, resolve_local_files_only

    if _looks_like_path(pretrained):
        return None
    try:
        from huggingface_hub import hf_hub_download

        index = hf_hub_download(
            pretrained,
            "model_index.json",
            cache_dir=hub_cache_dir(),
            local_files_only=resolve_local_files_only(local_files_only),
        )
    except Exception as e:  # any hub failure: the loader raises it again with its explanation
        logger.debug("could not read model_index.json of %r: %s", pretrained, e)
        return None
    return _class_name(Path(index))


def _class_name(index: Path) -> str:
    try:
        data = json.loads(index.read_text())
        name = data["_class_name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise T23dError(
            f"{index} is not a diffusers model_index.json with a '_class_name' entry ({e})"
        ) from e
    if not isinstance(name, str):
        raise T23dError(f"{index}: '_class_name' must be a string, got {name!r}")
    return name


def guidance_config_for_prior(
    cfg: GuidanceConfig, pretrained: str, local_files_only: Optional[bool] = None
) -> GuidanceConfig:
    """``cfg`` pointed at ``pretrained``, switched to the config class its pipeline class needs.

    When ``pretrained``'s ``model_index.json`` names a pipeline of another kind than ``cfg`` (e.g. an
    ``IFPipeline`` folder given to a Stable Diffusion preset), the result is the other class's defaults
    plus every field of ``cfg`` that the preset or user changed from ``cfg``'s own class defaults and
    that the other class also has (timestep schedules, weighting, view prompts, ...). Fields only the old
    class has (``vae_resolution``) are dropped; ``guidance_scale`` keeps the new class's default unless
    it was changed. What happened is logged. When the class cannot be read, ``cfg`` keeps its class.

    Raises:
        T23dError: ``model_index.json`` names a pipeline class t23d cannot use.
    """
    name = read_pipeline_class(
        pretrained, local_files_only if local_files_only is not None else cfg.local_files_only
    )
    if name is None:
        return dataclasses.replace(cfg, pretrained=pretrained)
    target = PIPELINE_CONFIGS.get(name)
    if target is None:
        accepted = ", ".join(f"{k} ({v.__name__})" for k, v in PIPELINE_CONFIGS.items())
        raise T23dError(
            f"prior {pretrained!r}: its model_index.json names the pipeline class {name!r}, which t23d cannot "
            f"use as a prior; accepted: {accepted}"
        )
    if isinstance(cfg, target):
        return dataclasses.replace(cfg, pretrained=pretrained)
    kept = _changed_fields(cfg, target)
    new = target(**kept, pretrained=pretrained)
    logger.info(
        "prior %s: its model_index.json names %s, so the guidance is %s (kept from the %s: %s; "
        "everything else is %s's defaults)",
        pretrained,
        name,
        target.__name__,
        type(cfg).__name__,
        ", ".join(sorted(kept)) or "nothing",
        target.__name__,
    )
    return new


def _changed_fields(cfg: Any, target: type) -> dict[str, Any]:
    """Fields of ``cfg`` that differ from its class defaults and exist in ``target`` (except ``pretrained``)."""
    defaults = type(cfg)()
    target_names = {f.name for f in dataclasses.fields(target)}
    return {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if f.name != "pretrained"
        and f.name in target_names
        and getattr(cfg, f.name) != getattr(defaults, f.name)
    }
