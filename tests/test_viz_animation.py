"""Inline animations without ffmpeg (diffusion_edu.viz.animation): one frame per image batch,
each frame drawn from its own images and title, and no figure left open afterwards."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from diffusion_edu.viz.animation import animate_images


def _frames(html: str) -> list[str]:
    """The base64 PNG of every frame in matplotlib's JavaScript player, in order."""
    return re.findall(r'frames\[\d+\] = "data:image/png;base64,([^"]+)"', html)


def test_animate_images_makes_one_frame_per_batch_and_closes_its_figure() -> None:
    open_before = plt.get_fignums()
    black, white = torch.full((2, 1, 8, 8), -1.0), torch.full((2, 1, 8, 8), 1.0)
    html = animate_images([black, white, black])
    assert "<script" in html
    frames = _frames(html)
    assert len(frames) == 3
    assert frames[0] != frames[1] and frames[0] == frames[2]  # each frame shows its own images
    assert plt.get_fignums() == open_before  # not also shown as a static last frame


def test_animate_images_draws_each_frames_title() -> None:
    same = torch.zeros(2, 1, 8, 8)
    frames = _frames(animate_images([same, same], titles=["t = 10", "t = 0"]))
    assert len(frames) == 2 and frames[0] != frames[1]  # same images, different titles
    untitled = _frames(animate_images([same, same]))
    assert untitled[0] == untitled[1]


def test_animate_images_needs_a_frame() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        animate_images([])


def test_animation_html_works_offline_with_no_url_and_labelled_buttons() -> None:
    same = torch.zeros(2, 1, 8, 8)
    html = animate_images([same, same])
    # matplotlib's own player loads Font Awesome from a CDN: offline that is a console error.
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert 'class="fa' not in html  # no icon left that needs the missing font
    buttons = re.findall(r'<button title="([^"]+)"[^>]*>\s*([^<]*?)\s*</button>', html)
    assert len(buttons) == 9, buttons
    labels = dict(buttons)
    assert labels["Play"] == "\u25b6\ufe0e" and labels["Pause"] == "\u275a\u275a"
    assert all(label for label in labels.values())  # every button still shows something


def test_offline_player_drops_external_stylesheets_and_keeps_the_rest() -> None:
    from diffusion_edu.viz.animation import offline_player

    page = (
        '<link rel="stylesheet"\nhref="https://cdn.example/fa.css">\n<script>var a = 1;</script>'
        '<button title="Play"><i class="fa fa-play"></i></button>'
        '<button title="Odd"><i class="fa fa-new-icon"></i></button>'
    )
    out = offline_player(page)
    assert out.startswith("<script>var a = 1;</script>")
    assert '<button title="Play">\u25b6\ufe0e</button>' in out
    assert '<button title="Odd">new-icon</button>' in out  # an unknown icon: its name, as text
