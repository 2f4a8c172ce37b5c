"""The albedo reference (a grey card marked in a photo): parsing, the pixels of its box, its photo."""

from __future__ import annotations

import pytest

from t23d.common.errors import ConfigError, T23dError
from t23d.data.albedo_reference import box_pixels, parse_albedo_reference, reference_photo_index


def test_parses_a_grey_card_and_a_coloured_patch():
    grey = parse_albedo_reference("IMG_0012.jpg:100,80,120,96=0.18")
    assert grey.photo == "IMG_0012.jpg"
    assert grey.box == (100.0, 80.0, 120.0, 96.0)
    assert grey.reflectance == (0.18, 0.18, 0.18)
    patch = parse_albedo_reference(" test/r_0.png:1.5,2,30,40.5=0.9,0.58,0.013 ")
    assert patch.photo == "test/r_0.png"
    assert patch.reflectance == (0.9, 0.58, 0.013)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("IMG.jpg=0.18", "expected PHOTO:x0,y0,x1,y1=REFLECTANCE"),
        ("IMG.jpg:1,2,3=0.18", "the box needs 4 numbers"),
        ("IMG.jpg:10,2,3,4=0.18", "x0 < x1"),
        ("IMG.jpg:1,2,3,4=0.2,0.3", "one number (a neutral card) or R,G,B"),
        ("IMG.jpg:1,2,3,4=18", "(0, 1]"),
        ("IMG.jpg:1,2,3,4=grey", "must be numbers"),
    ],
)
def test_malformed_references_name_the_option_the_problem_and_the_syntax(text, why):
    with pytest.raises(ConfigError) as e:
        parse_albedo_reference(text)
    msg = str(e.value)
    assert "--albedo-reference" in msg and why in msg and "PHOTO:x0,y0,x1,y1=REFLECTANCE" in msg


def test_box_pixels_are_those_whose_centres_lie_in_the_box_at_the_runs_resolution():
    rows, cols = box_pixels((2.0, 0.0, 6.0, 3.0), 1.0, 10, 10)
    assert list(cols) == [2, 3, 4, 5]  # centres 2.5 .. 5.5 lie in [2, 6]
    assert list(rows) == [0, 1, 2]
    # the photo stored at twice the run's resolution: [2, 6] stored is [1, 3] in the run, centres 1.5, 2.5
    rows, cols = box_pixels((2.0, 0.0, 6.0, 2.6), 0.5, 10, 10)
    assert list(cols) == [1, 2]
    assert list(rows) == [0]  # [0, 1.3]: only the centre 0.5
    # clipped at the image's edge
    assert list(box_pixels((0.0, 0.0, 50.0, 50.0), 1.0, 8, 6)[1]) == list(range(8))


def test_the_photo_is_found_by_name_or_folder_and_name():
    paths = ["/cap/train/r_0.png", "/cap/train/r_1.png", "/cap/test/r_0.png"]
    ref = parse_albedo_reference("r_1.png:0,0,4,4=0.18")
    assert reference_photo_index(ref, paths) == 1
    assert reference_photo_index(parse_albedo_reference("test/r_0.png:0,0,4,4=0.18"), paths) == 2
    with pytest.raises(T23dError, match="ambiguous .*2 photos.*'test/r_0.png"):
        reference_photo_index(parse_albedo_reference("r_0.png:0,0,4,4=0.18"), paths)
    with pytest.raises(T23dError, match="'IMG_9.jpg', which is not one of this capture's photos"):
        reference_photo_index(parse_albedo_reference("IMG_9.jpg:0,0,4,4=0.18"), paths)
