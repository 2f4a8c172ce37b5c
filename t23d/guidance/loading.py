"""Loading diffusers/transformers components from a hub id or a local pipeline folder, one code path.

Every component is loaded with ``Class.from_pretrained(pretrained, subfolder=...)`` whether
``pretrained`` is a hub id or a folder; this module only adds checks before loading and turns the
exceptions of ``from_pretrained`` into :class:`T23dError` messages that name the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

from t23d.common.errors import T23dError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def _looks_like_path(pretrained: str) -> bool:
    """True when ``pretrained`` cannot be a hub id ("org/name") and must be meant as a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if pretrained.startswith(("/", "./", "../", "~", ".")) or "\\" in pretrained or pretrained.count("/") > 1:
        return True
    try:
        validate_repo_id(pretrained)
    except HFValidationError:
        return True
    return False


def resolve_pretrained(
    pretrained: str, example_id: str, required: Sequence[str], kind: str
) -> tuple[str, bool]:
    """Check ``pretrained`` and return ``(source, is_local)``.

    A string naming an existing folder is a local pipeline folder (checked with
    :func:`check_pipeline_folder`); a string that cannot be a hub id and does not exist raises; anything
    else is a hub id.
    """
    if not isinstance(pretrained, str) or not pretrained.strip():
        raise T23dError(
            f"prior {pretrained!r} is empty; pass a hub id such as '{example_id}' or a diffusers folder"
        )
    path = Path(pretrained).expanduser()
    if path.exists():
        if not path.is_dir():
            raise T23dError(
                f"prior path {str(path)!r} is a file; pass a hub id such as '{example_id}' or a diffusers "
                f"{kind} pipeline folder (with model_index.json and {', '.join(s + '/' for s in required)})"
            )
        check_pipeline_folder(path, required, kind)
        return str(path), True
    if _looks_like_path(pretrained):
        raise T23dError(
            f"prior path {str(path)!r} does not exist; pass a hub id such as '{example_id}' or a diffusers "
            f"{kind} pipeline folder (with model_index.json and {', '.join(s + '/' for s in required)})"
        )
    return pretrained, False


def check_pipeline_folder(folder: Path, required: Sequence[str], kind: str) -> None:
    """Raise :class:`T23dError` listing what is missing unless ``folder`` is a diffusers pipeline folder."""
    missing = [] if (folder / "model_index.json").is_file() else ["model_index.json"]
    missing += [f"{name}/" for name in required if not (folder / name).is_dir()]
    if missing:
        raise T23dError(
            f"{folder} is not a diffusers {kind} pipeline folder: missing {', '.join(missing)}; expected "
            f"model_index.json and the subfolders {', '.join(s + '/' for s in required)} as written by "
            "DiffusionPipeline.save_pretrained or `huggingface-cli download <id> --local-dir <folder>`"
            + _other_kind_hint(folder)
        )


def _other_kind_hint(folder: Path) -> str:
    """A hint naming the guidance config that loads ``folder`` when its model_index.json names a known class."""
    from t23d.guidance.detect import PIPELINE_CONFIGS, read_pipeline_class

    try:
        name = read_pipeline_class(str(folder))
    except T23dError:
        return ""
    if name not in PIPELINE_CONFIGS:
        return ""
    return (
        f". Its model_index.json names {name}: pass it with `t23d generate --prior {folder}` (the prior's "
        f"pipeline class picks the guidance) or set guidance.type: {PIPELINE_CONFIGS[name].__name__}"
    )


def hub_cache_dir() -> str:
    """The hub cache folder in use now (``huggingface_hub.constants.HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_local_files_only(local_files_only: Optional[bool]) -> bool:
    """``local_files_only`` as given, or the HF_HUB_OFFLINE setting when None."""
    if local_files_only is not None:
        return local_files_only
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: Optional[BaseException] = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _explain(exc: BaseException, source: str, is_local: bool, component: str, cache_dir: str) -> T23dError:
    from huggingface_hub import errors as hf_errors

    chain = _chain(exc)
    if is_local:
        return T23dError(f"could not load {component} from the folder {source}: {exc}")
    if any(isinstance(e, hf_errors.GatedRepoError) for e in chain):
        return T23dError(
            f"the model {source!r} is gated on the Hugging Face hub: accept its licence on "
            f"https://huggingface.co/{source}, run `huggingface-cli login`, then retry (or pass a local "
            "folder with --prior /path/to/folder)"
        )
    if any(isinstance(e, hf_errors.RepositoryNotFoundError) for e in chain):
        return T23dError(
            f"the model {source!r} was not found on the Hugging Face hub (or is private); check the id, or pass "
            "a local diffusers folder with --prior /path/to/folder"
        )
    offline = (
        hf_errors.LocalEntryNotFoundError,
        hf_errors.OfflineModeIsEnabled,
        ConnectionError,
        TimeoutError,
    )
    connection_names = ("ConnectError", "ConnectTimeout", "ConnectionError", "Timeout")
    if any(isinstance(e, offline) or type(e).__name__ in connection_names for e in chain):
        return T23dError(
            f"the weights of {source!r} ({component}) are not in the Hugging Face cache {cache_dir} and the hub "
            f"cannot be reached (offline: HF_HUB_OFFLINE=1 or no network). Pass a local diffusers folder with "
            f"--prior /path/to/folder, or download the model on a connected machine with "
            f"`huggingface-cli download {source}` and copy the cache (or set HF_HOME to it)"
        )
    return T23dError(f"could not load {component} of {source!r} from the Hugging Face hub: {exc}")


def load_component(
    load_fn: Callable[..., T],
    source: str,
    is_local: bool,
    subfolder: str,
    local_files_only: bool,
    **kwargs: Any,
) -> T:
    """``load_fn(source, subfolder=subfolder, local_files_only=..., cache_dir=HF_HUB_CACHE, **kwargs)``.

    ``load_fn`` is a ``from_pretrained`` classmethod. Its exceptions become :class:`T23dError`.
    Components with weights (torch modules: text encoders, UNets, VAEs) are loaded with
    ``use_safetensors=True``: pickled ``.bin``/``.pt`` weights, which can run code when unpickled, are
    refused with a message saying how to convert them (:func:`check_safetensors_weights`).
    """
    cache_dir = hub_cache_dir()
    dtype = kwargs.get("torch_dtype")
    logger.info(
        "loading %s from %s%s", subfolder, source, f" ({str(dtype).removeprefix('torch.')})" if dtype else ""
    )
    if _holds_weights(load_fn):
        kwargs.setdefault("use_safetensors", True)
        if is_local:
            check_safetensors_weights(Path(source), subfolder, load_fn)
    try:
        return load_fn(
            source, subfolder=subfolder, local_files_only=local_files_only, cache_dir=cache_dir, **kwargs
        )
    except T23dError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as e:
        if kwargs.get("use_safetensors") and ".safetensors" in str(e) and not is_local:
            raise T23dError(
                f"{source!r} has no safetensors weights for {subfolder}/ (only pickled ones, or none); t23d loads "
                "weights from .safetensors files only. Use a revision or mirror of the model with safetensors "
                "weights, or convert a local copy (see --prior /path/to/folder)"
            ) from e
        raise _explain(e, source, is_local, f"{subfolder}/", cache_dir) from e


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _holds_weights(load_fn: Callable[..., Any]) -> bool:
    """Whether ``load_fn`` is the ``from_pretrained`` of a torch module class (it loads weights)."""
    owner = getattr(load_fn, "__self__", None)
    if not isinstance(owner, type):
        return False
    import torch

    return issubclass(owner, torch.nn.Module)


def check_safetensors_weights(folder: Path, subfolder: str, load_fn: Callable[..., Any]) -> None:
    """Refuse a local component folder whose weights are only pickled (``.bin``, ``.pt``, ...).

    Unpickling a file can run arbitrary code; torch's ``weights_only`` loading narrows that, but t23d
    reads weights from ``.safetensors`` only. The message names the files and the one-time conversion.
    """
    part = folder / subfolder
    if not part.is_dir() or any(part.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in part.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if not pickled:
        return
    cls = getattr(getattr(load_fn, "__self__", None), "__name__", "TheModelClass")
    raise T23dError(
        f"the prior's {subfolder}/ in {folder} holds only pickled weights ({', '.join(pickled[:3])}); t23d "
        "loads weights from .safetensors files only (unpickling can run arbitrary code). If you trust the file, "
        f'convert it once: python -c "from {"transformers" if cls.endswith(("TextModel", "EncoderModel")) else "diffusers"} '
        f"import {cls}; m = {cls}.from_pretrained('{folder}', subfolder='{subfolder}', use_safetensors=False); "
        f"m.save_pretrained('{part}', safe_serialization=True)\""
    )


def select_dtype(half_precision: bool, device: Any, cpu_dtype: str = "float32") -> Any:
    """float16 when ``half_precision`` on CUDA; on CPU float32, or bfloat16 when ``cpu_dtype == "bfloat16"``
    (or ``"auto"`` on a CPU with native bfloat16 dot products).

    A bfloat16 request on a CPU without native bfloat16 dot products is honoured with a warning (slower).
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16 if half_precision else torch.float32
    if cpu_dtype == "auto":
        native = cpu_has_native_bfloat16()
        logger.info(
            "guidance.cpu_dtype auto: %s",
            "bfloat16 (this CPU has native bfloat16 dot products)"
            if native
            else "float32 (this CPU has no native bfloat16 dot products, AVX512-BF16 / AMX: emulated "
            "bfloat16 would be slower)",
        )
        return torch.bfloat16 if native else torch.float32
    if cpu_dtype == "bfloat16":
        if not cpu_has_native_bfloat16():
            logger.warning(
                "guidance.cpu_dtype: bfloat16 was asked for, but this CPU has no native bfloat16 dot products "
                "(AVX512-BF16 / AMX): it is emulated and slower than float32"
            )
        return torch.bfloat16
    if cpu_dtype != "float32":
        from t23d.common.errors import ConfigError

        raise ConfigError(
            f"config key 'guidance.cpu_dtype': invalid value {cpu_dtype!r}; accepted: 'float32', 'bfloat16', 'auto'"
        )
    return torch.float32


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN can run bfloat16 matrix products natively here (AVX512-BF16 or AMX)."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def freeze(module: Any) -> Any:
    """Put a torch module in eval mode with no parameter requiring grad; return it."""
    module.eval()
    module.requires_grad_(False)
    return module


def free_device_memory(device: Any) -> None:
    """Collect garbage and release cached CUDA blocks when ``device`` is CUDA."""
    import gc

    import torch

    gc.collect()
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class PriorSource:
    """A prior resolved for loading (:func:`open_prior`): where its components come from, the dtype of
    their weights and the device they go to."""

    source: str
    """The local pipeline folder (expanded path) or the hub id."""
    is_local: bool
    """Whether ``source`` is a local folder."""
    local_files_only: bool
    """Never contact the hub (resolved from the config and HF_HUB_OFFLINE)."""
    dtype: Any
    """``torch.dtype`` of the weights (:func:`select_dtype`)."""
    device: Any
    """``torch.device`` the frozen modules are moved to."""

    @property
    def location(self) -> dict[str, Any]:
        """``source``, ``is_local`` and ``local_files_only`` as keyword arguments of :func:`load_component`."""
        return {"source": self.source, "is_local": self.is_local, "local_files_only": self.local_files_only}

    def load(self, load_fn: Callable[..., T], subfolder: str, **kwargs: Any) -> T:
        """The component in ``subfolder`` as ``load_fn`` (a ``from_pretrained``) returns it (:func:`load_component`)."""
        return load_component(load_fn, subfolder=subfolder, **self.location, **kwargs)

    def load_frozen(self, load_fn: Callable[..., Any], subfolder: str, **kwargs: Any) -> Any:
        """A torch module component loaded in :attr:`dtype`, frozen (:func:`freeze`) and moved to :attr:`device`."""
        return freeze(self.load(load_fn, subfolder, torch_dtype=self.dtype, **kwargs)).to(self.device)

    def scheduler_constants(self) -> tuple[Any, int, str]:
        """``(alphas_cumprod [T] float32 on the device, T, prediction_type)`` (:func:`load_scheduler_constants`)."""
        alphas_cumprod, num_train_timesteps, prediction_type = load_scheduler_constants(**self.location)
        return alphas_cumprod.to(self.device), num_train_timesteps, prediction_type


def open_prior(
    pretrained: str,
    local_files_only: Optional[bool],
    half_precision: bool,
    device: Any,
    *,
    example_id: str,
    required: Sequence[str],
    family: str,
    cpu_dtype: str = "float32",
) -> PriorSource:
    """Resolve a prior before any component is loaded: the start-up every prior's loader shares.

    ``pretrained`` is checked as a local pipeline folder holding the ``required`` subfolders or taken as a
    hub id (:func:`resolve_pretrained`; ``example_id`` and ``family`` name the expected kind in errors),
    ``local_files_only`` None follows HF_HUB_OFFLINE, and the dtype follows ``half_precision`` on CUDA and
    ``cpu_dtype`` on CPU (:func:`select_dtype`).
    """
    import torch

    source, is_local = resolve_pretrained(pretrained, example_id, required, family)
    local_only = resolve_local_files_only(local_files_only)
    dtype = select_dtype(half_precision, device, cpu_dtype)
    return PriorSource(source, is_local, local_only, dtype, torch.device(device))


def load_scheduler_constants(source: str, is_local: bool, local_files_only: bool) -> tuple[Any, int, str]:
    """``(alphas_cumprod [T] float32 CPU, T, prediction_type)`` from the pipeline's scheduler config."""
    from diffusers import DDPMScheduler

    scheduler = load_component(DDPMScheduler.from_pretrained, source, is_local, "scheduler", local_files_only)
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise T23dError(
            f"prior {source!r}: scheduler prediction_type {prediction_type!r} is not supported; "
            "accepted: 'epsilon', 'v_prediction'"
        )
    alphas_cumprod = scheduler.alphas_cumprod.detach().clone().float()  # [T]
    return alphas_cumprod, int(scheduler.config.num_train_timesteps), prediction_type
