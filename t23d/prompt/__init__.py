"""Text prompt handling: validation and view-dependent prompts (DreamFusion section 3.2).

Importing this package does not import torch; :func:`view_index` imports it when called.
"""

from t23d.prompt.config import ViewPromptConfig
from t23d.prompt.view import VIEW_NAMES, validate_prompt, view_index, view_prompts

__all__ = ["VIEW_NAMES", "ViewPromptConfig", "validate_prompt", "view_index", "view_prompts"]
