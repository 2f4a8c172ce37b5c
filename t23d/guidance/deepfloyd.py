"""DeepFloyd IF stage-I pixel-space SDS guidance (the only module importing diffusers for IF)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from t23d.common.errors import ConfigError, T23dError
from t23d.guidance.config import DeepFloydGuidanceConfig
from t23d.guidance.loading import PriorSource, free_device_memory, open_prior
from t23d.guidance.sds import ScoreDistillationGuidance, resize_images
from t23d.prompt.view import view_prompts

logger = logging.getLogger(__name__)

IF_SUBFOLDERS = ("unet", "text_encoder", "tokenizer", "scheduler")
"""Subfolders a DeepFloyd IF pipeline folder must hold (beside model_index.json)."""

IF_MAX_LENGTH = 77
"""T5 token length used by the IF pipeline (diffusers ``IFPipeline.encode_prompt``)."""


def _load_t5_tokenizer(prior: PriorSource) -> Any:
    from transformers import T5Tokenizer

    try:
        return prior.load(T5Tokenizer.from_pretrained, "tokenizer")
    except T23dError as e:
        if "sentencepiece" in str(e) or "protobuf" in str(e) or "tiktoken" in str(e):
            raise T23dError(
                f"{e}\nDeepFloyd IF's tokenizer ships as a sentencepiece model (spiece.model); reading it needs "
                "`pip install sentencepiece protobuf`"
            ) from e
        raise


def encode_prompts_t5(
    tokenizer: Any, text_encoder: Any, prompts: list[str], device: torch.device
) -> torch.Tensor:
    """T5 text embeddings ``[N, 77, D]`` as IFPipeline computes them (lower-cased, attention-masked)."""
    prompts = [p.lower().strip() for p in prompts]
    tokens = tokenizer(
        prompts,
        padding="max_length",
        max_length=IF_MAX_LENGTH,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    full = tokenizer(prompts, padding=False, truncation=False)
    for prompt, ids in zip(prompts, full.input_ids):
        if len(ids) > IF_MAX_LENGTH:
            logger.warning(
                "prompt %r is longer than %d tokens; the text encoder sees it truncated",
                prompt,
                IF_MAX_LENGTH,
            )
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device))[0]


class DeepFloydGuidance(ScoreDistillationGuidance):
    """SDS in pixel space at 64x64 against a frozen DeepFloyd IF stage-I UNet (T5 freed after use)."""

    kind = "deepfloyd-if"
    input_size_key = "guidance.resolution"

    def __init__(
        self, cfg: DeepFloydGuidanceConfig, prompt: str, negative_prompt: str, device: torch.device
    ) -> None:
        from diffusers import UNet2DConditionModel
        from transformers import T5EncoderModel

        super().__init__(cfg, prompt, negative_prompt, device)
        if cfg.resolution <= 0:
            raise ConfigError(
                f"config key 'guidance.resolution': invalid value {cfg.resolution!r}; accepted: a positive size (64)"
            )
        self.view_prompt_list = view_prompts(prompt, cfg.view_prompts)
        prior = open_prior(
            cfg.pretrained, cfg.local_files_only, cfg.half_precision, self.device,
            example_id="DeepFloyd/IF-I-XL-v1.0", required=IF_SUBFOLDERS, family="DeepFloyd IF",
        )  # fmt: skip
        self.source, self.is_local, self.dtype = prior.source, prior.is_local, prior.dtype
        self.alphas_cumprod, self.num_train_timesteps, self.prediction_type = prior.scheduler_constants()

        tokenizer = _load_t5_tokenizer(prior)
        text_encoder = prior.load_frozen(T5EncoderModel.from_pretrained, "text_encoder")
        embeddings = encode_prompts_t5(
            tokenizer, text_encoder, [*self.view_prompt_list, negative_prompt], self.device
        )
        self.cond_embeddings = embeddings[:-1].to(self.dtype)  # [V, 77, D]
        self.uncond_embedding = embeddings[-1:].to(self.dtype)  # [1, 77, D]
        del text_encoder, tokenizer
        free_device_memory(self.device)

        self.unet = prior.load_frozen(UNet2DConditionModel.from_pretrained, "unet", low_cpu_mem_usage=False)
        if self.unet.config.in_channels != 3:
            raise T23dError(
                f"prior {self.source!r}: the UNet takes {self.unet.config.in_channels} channels; a DeepFloyd IF "
                "stage-I UNet takes 3 (RGB pixels). Is this a latent (Stable Diffusion) prior?"
            )

    def input_size(self) -> int:
        """IF's pixel size ``resolution``: renders are resized to it inside the guidance."""
        return self.cfg.resolution

    def encode(self, images_bchw: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, 3, R, R]`` in [-1, 1] (R = resolution); no randomness."""
        return resize_images(images_bchw, self.cfg.resolution) * 2.0 - 1.0

    def predict_model_output(
        self, z_t: torch.Tensor, t: torch.Tensor, embeddings: torch.Tensor
    ) -> torch.Tensor:
        """IF predicts 6 channels (noise, variance); keep the noise ``[N, 3, R, R]``."""
        return self.unet(z_t, t, encoder_hidden_states=embeddings).sample[:, :3]

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run.json."""
        out = super().describe()
        out["resolution"] = self.cfg.resolution
        return out
