"""What a job computes: typed specs for ``generate`` and ``reconstruct`` jobs, and their command lines.

A job runs the ``t23d`` CLI itself in a subprocess (``python -m t23d.cli.main generate ... --out
PARENT``), so a job does exactly what the same command would do in a terminal, and a crash or an
out-of-memory kill of a job cannot take its worker down.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from t23d.common.errors import ConfigError

Preset = Literal["fast", "default", "quality"]
PRESETS: tuple[str, ...] = ("fast", "default", "quality")
DataFormat = Literal["auto", "nerfstudio", "blender", "colmap", "images"]
DATA_FORMATS: tuple[str, ...] = ("auto", "nerfstudio", "blender", "colmap", "images")
MAX_PROMPT_CHARS = 500
MAX_STEPS = 1_000_000


@dataclass
class GenerateSpec:
    """A text-to-3D job: the options of ``t23d generate``."""

    kind: ClassVar[str] = "generate"
    prompt: str
    """What to generate (1 to 500 characters)."""
    negative_prompt: str | None = None
    """What to steer away from."""
    preset: Preset = "default"
    """Preset: "fast", "default" or "quality"."""
    steps: int | None = None
    """Optimisation steps (None: the preset's)."""
    seed: int | None = None
    """Random seed (None: the preset's)."""
    prior: str | None = None
    """One of the priors the service was started with (None: the service's first prior)."""


@dataclass
class ReconstructSpec:
    """A photos-to-3D job: the options of ``t23d reconstruct``."""

    kind: ClassVar[str] = "reconstruct"
    input: str
    """The capture: a folder of photos or a nerfstudio/Blender/COLMAP capture (a path on the
    worker's filesystem; the web service puts uploads in the job's ``inputs/`` folder)."""
    data_format: DataFormat = "auto"
    """Capture format: "auto", "nerfstudio", "blender", "colmap" or "images" (raw photos, posed by SfM)."""
    preset: Preset = "default"
    """Preset: "fast", "default" or "quality"."""
    steps: int | None = None
    """Optimisation steps (None: the preset's)."""
    seed: int | None = None
    """Random seed (None: the preset's)."""
    downscale: int | None = None
    """Divide image sizes by this factor (None: the format's default)."""
    faces: int | None = None
    """Target triangle count of the asset (None: the preset's)."""
    texture_size: int | None = None
    """Texture width/height in texels, a power of two (None: the preset's)."""


JobSpec = Union[GenerateSpec, ReconstructSpec]
SPEC_TYPES: dict[str, type] = {"generate": GenerateSpec, "reconstruct": ReconstructSpec}


def _check_int(name: str, value: Any, low: int, high: int, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def validate_spec(spec: JobSpec, priors: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` naming the field, the value and what is accepted.

    ``priors`` are the priors a caller may pick from; a spec naming any other prior is refused (a web
    user must never make the service load an arbitrary path or hub id).
    """
    if spec.preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {spec.preset!r}")
    _check_int("steps", spec.steps, 1, MAX_STEPS)
    _check_int("seed", spec.seed, 0, 2**32 - 1)
    if isinstance(spec, GenerateSpec):
        if not isinstance(spec.prompt, str) or not spec.prompt.strip():
            raise ConfigError("prompt must be a non-empty string")
        if len(spec.prompt) > MAX_PROMPT_CHARS:
            raise ConfigError(f"prompt must be at most {MAX_PROMPT_CHARS} characters, got {len(spec.prompt)}")
        if spec.negative_prompt is not None and (
            not isinstance(spec.negative_prompt, str) or len(spec.negative_prompt) > MAX_PROMPT_CHARS
        ):
            raise ConfigError(f"negative_prompt must be a string of at most {MAX_PROMPT_CHARS} characters")
        if spec.prior is not None and spec.prior not in priors:
            accepted = ", ".join(priors) if priors else "(none: this service uses its default prior)"
            raise ConfigError(f"prior {spec.prior!r} is not one of this service's priors: {accepted}")
    elif isinstance(spec, ReconstructSpec):
        if not isinstance(spec.input, str) or not spec.input:
            raise ConfigError("input must be a path")
        if spec.data_format not in DATA_FORMATS:
            raise ConfigError(
                f"data_format must be one of {', '.join(DATA_FORMATS)}, got {spec.data_format!r}"
            )
        _check_int("downscale", spec.downscale, 1, 64)
        _check_int("faces", spec.faces, 100, 5_000_000)
        if spec.texture_size is not None:
            _check_int("texture_size", spec.texture_size, 4, 16384)
            if spec.texture_size & (spec.texture_size - 1):
                raise ConfigError(f"texture_size must be a power of two, got {spec.texture_size}")
    else:
        raise ConfigError(f"unknown job spec {type(spec).__name__}")


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    """Plain JSON-able form, with ``kind``."""
    return {"kind": spec.kind, **dataclasses.asdict(spec)}


def spec_from_dict(data: dict[str, Any]) -> JobSpec:
    """Inverse of :func:`spec_to_dict`; unknown keys or kinds raise :class:`ConfigError`."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in SPEC_TYPES:
        raise ConfigError(f"kind must be one of {', '.join(SPEC_TYPES)}, got {kind!r}")
    cls = SPEC_TYPES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown field(s) for a {kind} job: {', '.join(unknown)}; accepted: {', '.join(sorted(names))}"
        )
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"invalid {kind} job: {e}") from e


def spec_title(spec: JobSpec) -> str:
    """A short human title (the prompt, or the capture's folder name)."""
    if isinstance(spec, GenerateSpec):
        return spec.prompt
    return Path(spec.input).name


@dataclass
class CommandSettings:
    """How a worker turns a spec into a command line (set by whoever runs the workers)."""

    priors: tuple[str, ...] = ()
    """Priors a job may name; the first is used when a job names none (empty: the CLI's default)."""
    config_files: tuple[str, ...] = ()
    """YAML override files (``--config``) added to every job, e.g. ``configs/cpu-smoke.yaml``."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device passed to every job (``--device``)."""
    python: str = ""
    """Python interpreter that runs the CLI ("" = the worker's own ``sys.executable``)."""


def find_run_dir(runs_parent: Path) -> Path | None:
    """The job's run directory inside ``runs_parent`` (the newest one with a ``run.json``), if any."""
    if not runs_parent.is_dir():
        return None
    runs = [p for p in runs_parent.iterdir() if p.is_dir() and (p / "run.json").is_file()]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def resumable_run_dir(runs_parent: Path) -> Path | None:
    """The job's run directory if it has a checkpoint to resume from (``checkpoints/latest.json``)."""
    run_dir = find_run_dir(runs_parent)
    if run_dir is not None and (run_dir / "checkpoints" / "latest.json").is_file():
        return run_dir
    return None


def build_command(spec: JobSpec, runs_parent: Path, settings: CommandSettings) -> list[str]:
    """The CLI command for ``spec``: a new run under ``runs_parent``, or ``--resume`` of the run there
    when it has a checkpoint (a job that was interrupted, cancelled, or whose worker died)."""
    cmd = [settings.python or sys.executable, "-m", "t23d.cli.main", spec.kind]
    resume = resumable_run_dir(runs_parent)
    if resume is not None:
        # the saved config.yaml has everything else; steps may have been extended by the spec
        cmd += ["--resume", str(resume), "--device", settings.device]
        if spec.steps is not None:
            cmd += ["--steps", str(spec.steps)]
        return cmd
    if isinstance(spec, GenerateSpec):
        cmd.append(spec.prompt)
        if spec.negative_prompt:
            cmd += ["--negative-prompt", spec.negative_prompt]
        prior = spec.prior or (settings.priors[0] if settings.priors else None)
        if prior is not None:
            cmd += ["--prior", prior]
    else:
        cmd += [spec.input, "--format", spec.data_format]
        for flag, value in (
            ("--downscale", spec.downscale),
            ("--faces", spec.faces),
            ("--texture-size", spec.texture_size),
        ):
            if value is not None:
                cmd += [flag, str(value)]
    cmd += ["--preset", spec.preset, "--device", settings.device, "--out", str(runs_parent)]
    for f in settings.config_files:
        cmd += ["--config", f]
    if spec.steps is not None:
        cmd += ["--steps", str(spec.steps)]
    if spec.seed is not None:
        cmd += ["--seed", str(spec.seed)]
    return cmd


def spec_json(spec: JobSpec) -> str:
    """Canonical JSON of a spec (stored in the job table)."""
    return json.dumps(spec_to_dict(spec), sort_keys=True)


def resolve_config_files(files: list[str] | tuple[str, ...], option: str = "--config") -> tuple[str, ...]:
    """Absolute paths of YAML override files (also looked up in ``configs/``); a missing one raises."""
    out = []
    for f in files:
        path = Path(f)
        if not path.is_file() and (Path("configs") / f).is_file():
            path = Path("configs") / f
        if not path.is_file():
            raise ConfigError(f"{option} {f}: no such file")
        out.append(str(path.resolve()))
    return tuple(out)


def resolve_priors(priors: list[str] | tuple[str, ...], option: str = "--prior") -> tuple[str, ...]:
    """Priors as jobs will name them: existing local folders as absolute paths, hub ids unchanged."""
    out = tuple(str(Path(p).resolve()) if Path(p).exists() else p for p in priors)
    if len(set(out)) != len(out):
        raise ConfigError(f"{option} given twice: {', '.join(out)}")
    return out
