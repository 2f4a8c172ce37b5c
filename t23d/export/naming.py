"""Filesystem-safe asset names."""

from __future__ import annotations

import re
import unicodedata

from t23d.common.errors import ConfigError

_MAX_LEN = 64
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def slugify(prompt: str, max_length: int = _MAX_LEN) -> str:
    """Turn a prompt into a lowercase ASCII name of ``[a-z0-9_]``, at most ``max_length`` characters.

    Accents are folded ("Crème brûlée" -> "creme_brulee"), every run of other characters becomes one
    underscore, long names are cut at a word boundary when possible, and an empty result is "asset".
    """
    text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "_", text).strip("_")
    if len(slug) > max_length:
        cut = slug[:max_length]
        slug = cut.rsplit("_", 1)[0] if "_" in cut[max_length // 2 :] else cut
        slug = slug.strip("_")
    return slug or "asset"


def check_asset_name(name: str) -> None:
    """Raise ConfigError unless ``name`` is usable as a file stem (letters, digits, '.', '_', '-')."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name.endswith("."):
        raise ConfigError(
            f"asset name {name!r} is not a safe file name: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (t23d.export.slugify(prompt) makes one)"
        )
