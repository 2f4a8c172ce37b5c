"""Configuration of view-dependent prompts (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class NegativeWeight:
    """Weight of one Perp-Neg negative prompt as a function of the view's interpolation ratio ``r``:
    ``-(scale * exp(-rate * r) + shift)`` (Armandpour et al. 2023; threestudio's ``shifted_expotional_decay``
    with its sign). ``r`` is the share of the first-named view in the positive prompt (see
    :class:`PerpNegConfig`)."""

    scale: float
    """Multiplier of the exponential (a)."""
    rate: float
    """Decay rate of the exponential in ``r`` (b)."""
    shift: float
    """Constant added to the exponential (c); the weight is the negated sum."""


@dataclass
class PerpNegConfig:
    """Perp-Neg view prompts (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm"),
    as threestudio's ``use_perp_neg`` prompt processor.

    The positive prompt of a camera interpolates the view-prompt embeddings by azimuth: between front
    (|azimuth| = 0) and side (90) with ``r = 1 - |azimuth| / 90`` the front share, between side and
    back (180) with ``r = 2 - |azimuth| / 90`` the side share. Two negative prompts push away from the
    views this camera must not show: front/side cameras get the front and side prompts as negatives
    (weights ``front_side(r)`` and ``side_front(1 - r)``), side/back cameras the side and front prompts
    (``side_back(r)`` and ``front_back(r)``). Only the component of each negative direction that is
    perpendicular to the positive direction is used, so negatives remove the other view's features
    without cancelling the object. Overhead cameras (the view prompts' overhead region) use the
    overhead prompt and no negatives. Each step costs 4 UNet evaluations per view instead of 2.
    """

    front_side: NegativeWeight = field(default_factory=lambda: NegativeWeight(4.0, 0.5, -2.426))
    """Weight of the negative *front* prompt for front/side cameras, at the front share r
    (0 at a pure front view, -1.57 at a pure side view)."""
    side_front: NegativeWeight = field(default_factory=lambda: NegativeWeight(4.0, 0.5, -2.426))
    """Weight of the negative *side* prompt for front/side cameras, at the side share 1 - r."""
    side_back: NegativeWeight = field(default_factory=lambda: NegativeWeight(1.0, 0.5, -0.606))
    """Weight of the negative *side* prompt for side/back cameras, at the side share r."""
    front_back: NegativeWeight = field(default_factory=lambda: NegativeWeight(1.0, 0.5, 0.967))
    """Weight of the negative *front* prompt for side/back cameras, at the side share r
    (-1.57 at a side view, -1.97 at a pure back view)."""
