"""Configuration of view-dependent prompts (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ViewPromptConfig:
    """View-dependent prompt suffixes, chosen per camera from its azimuth and elevation.

    Conventions: azimuth 0 deg looks at the object's front, azimuth is in degrees and wrapped to
    (-180, 180]; elevation is in degrees above the horizontal (+90 looks straight down from above).
    Regions, checked in this order, later ones winning (as threestudio does):
    side (everything), front ``|azimuth| < front_azimuth_deg``,
    back ``|azimuth| > 180 - back_azimuth_deg``, overhead ``elevation > overhead_elevation_deg``.
    Boundaries are strict, so an azimuth of exactly ``front_azimuth_deg`` is a side view.
    """

    enabled: bool = True
    """Append a view suffix to the prompt. When False every camera uses the plain prompt."""
    front_suffix: str = ", front view"
    """Appended to the prompt for front views (view index 0)."""
    side_suffix: str = ", side view"
    """Appended to the prompt for side views (view index 1)."""
    back_suffix: str = ", back view"
    """Appended to the prompt for back views (view index 2)."""
    overhead_suffix: str = ", overhead view"
    """Appended to the prompt for overhead views (view index 3)."""
    front_azimuth_deg: float = 45.0
    """Half-width of the front region in degrees: front when ``|azimuth| < front_azimuth_deg``."""
    back_azimuth_deg: float = 45.0
    """Half-width of the back region in degrees: back when ``|azimuth| > 180 - back_azimuth_deg``."""
    overhead_elevation_deg: float = 60.0
    """Elevation threshold in degrees: overhead (whatever the azimuth) when ``elevation > this``."""
