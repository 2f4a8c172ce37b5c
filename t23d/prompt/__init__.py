"""Text prompt handling: validation, view-dependent prompts (DreamFusion section 3.2) and Perp-Neg weights.

Importing this package does not import torch; :func:`view_index` and :func:`perp_neg_views` import it
when called.
"""

from t23d.prompt.config import NegativeWeight, PerpNegConfig, ViewPromptConfig
from t23d.prompt.perpneg import PerpNegViews, perp_neg_views
from t23d.prompt.view import VIEW_NAMES, validate_prompt, view_index, view_prompts

__all__ = [
    "VIEW_NAMES",
    "NegativeWeight",
    "PerpNegConfig",
    "PerpNegViews",
    "ViewPromptConfig",
    "perp_neg_views",
    "validate_prompt",
    "view_index",
    "view_prompts",
]
