"""A surface of known reflectance in one photo (a grey card): what pins the scale of a relightable albedo.

A shading model explains each photo as ``albedo x light``; ``albedo x k`` under ``light / k`` explains the
same photos, so the albedo it learns is right only up to one gain per colour channel (measured on the
100-view duck: about 1.36x too dark, benchmarks/RESULTS.md). Photographers remove that ambiguity with a
reference of known reflectance in the scene: an 18 % grey card, a white-balance card or one patch of a
colour checker. Marking it in one photo lets the export scale the albedo so that the card comes out at its
true reflectance (which also white-balances the texture when the card is neutral).

Syntax of ``ExportConfig.albedo_reference`` (``--albedo-reference`` on the command line)::

    "PHOTO:x0,y0,x1,y1=REFLECTANCE"

a box in pixels of the photo as stored (x to the right, y down from the top-left corner; draw it well
inside the card), then ``=`` and the card's reflectance: one number for a neutral card (``0.18`` for an
18 % grey card) or ``R,G,B``, each a **linear** reflectance in (0, 1] (an sRGB value ``v`` of a colour
chart is ``((v + 0.055) / 1.055) ** 2.4`` in linear). The card must be part of what the run reconstructs
(inside the object's box, and inside the masks of masked photos): the albedo is read from the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from t23d.common.errors import ConfigError, T23dError

_SYNTAX = "'PHOTO:x0,y0,x1,y1=REFLECTANCE' (pixels of the photo; a linear reflectance, or R,G,B), e.g. 'r_12.png:100,80,120,96=0.18'"
_SPEC = re.compile(r"^(?P<photo>.+):(?P<box>[^:=]+)=(?P<refl>[^=]+)$")


@dataclass(frozen=True)
class AlbedoReference:
    """A box in one photo showing a surface of known reflectance."""

    photo: str
    """File name of the photo (as in the capture; any of its photos, training or held out)."""
    box: tuple[float, float, float, float]
    """``(x0, y0, x1, y1)`` in pixels of the photo as stored, ``x0 < x1`` and ``y0 < y1``."""
    reflectance: tuple[float, float, float]
    """The surface's linear reflectance per colour channel, each in (0, 1]."""


def parse_albedo_reference(text: str) -> AlbedoReference:
    """Parse the ``albedo_reference`` option (module docstring); a malformed value is a
    :class:`ConfigError` naming the option, the value and the syntax."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"config key 'export.albedo_reference' (--albedo-reference): invalid value {text!r}: {why}; "
            f"accepted: {_SYNTAX}"
        )

    m = _SPEC.match(text.strip())
    if m is None:
        raise bad("expected PHOTO:x0,y0,x1,y1=REFLECTANCE")
    try:
        box = tuple(float(v) for v in m["box"].split(","))
        refl = tuple(float(v) for v in m["refl"].split(","))
    except ValueError:
        raise bad("the box and the reflectance must be numbers") from None
    if len(box) != 4:
        raise bad(f"the box needs 4 numbers x0,y0,x1,y1, got {len(box)}")
    x0, y0, x1, y1 = box
    if not (x0 < x1 and y0 < y1) or min(box) < 0:
        raise bad("the box needs 0 <= x0 < x1 and 0 <= y0 < y1 (pixels from the top-left corner)")
    if len(refl) == 1:
        refl = refl * 3
    if len(refl) != 3:
        raise bad(f"the reflectance is one number (a neutral card) or R,G,B, got {len(refl)} numbers")
    if not all(0.0 < r <= 1.0 for r in refl):
        raise bad("each reflectance must lie in (0, 1] (linear; an 18 % grey card is 0.18)")
    return AlbedoReference(m["photo"].strip(), box, refl)  # type: ignore[arg-type]


def box_pixels(
    box: tuple[float, float, float, float], scale: float, width: int, height: int
) -> tuple[range, range]:
    """Rows and columns (of an image ``width`` x ``height``, the photo as stored times ``scale``) whose
    pixel centres lie inside ``box`` (pixels of the photo as stored)."""
    x0, y0, x1, y1 = box

    def span(lo: float, hi: float, size: int) -> range:
        first = max(0, int(-(-(lo * scale - 0.5) // 1)))  # ceil(lo * scale - 0.5)
        last = min(size - 1, int((hi * scale - 0.5) // 1))  # floor(hi * scale - 0.5)
        return range(first, last + 1)

    return span(y0, y1, height), span(x0, x1, width)


def reference_photo_index(ref: AlbedoReference, image_paths: list[str]) -> int:
    """Index of the photo ``ref`` is marked in among the capture's ``image_paths``: its file name, or the
    end of its path when names repeat (``test/r_0.png`` in a Blender layout). A T23dError naming the
    photo and the choices when none or several match (checked before training starts)."""
    want = ref.photo.replace("\\", "/").strip("/")
    paths = [str(p).replace("\\", "/") for p in image_paths]
    hits = [i for i, p in enumerate(paths) if p == want or p.endswith("/" + want)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        shown = ", ".join("/".join(paths[i].split("/")[-2:]) for i in hits[:4])
        raise T23dError(
            f"--albedo-reference: the photo {ref.photo!r} is ambiguous ({len(hits)} photos: {shown}); name "
            "it with its folder, e.g. 'test/r_0.png:...'"
        )
    names = [p.split("/")[-1] for p in paths]
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    raise T23dError(
        f"--albedo-reference names the photo {ref.photo!r}, which is not one of this capture's photos "
        f"({shown}); mark the card in one of them (its file name, or folder/name)"
    )
