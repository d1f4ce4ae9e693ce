"""Pictures, animations and widgets for the lessons. Sits on top of everything: nothing in the
core imports ``diffusion_edu.viz``.

Import what you need explicitly, e.g. ``from diffusion_edu.viz.plots import show_images``.
"""
