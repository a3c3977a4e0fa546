"""Pictures of models: image grids as PNG with their layout inside (``grids``: perception,
attack, noise, edit and layer grids) and matplotlib plots (``plots``: curves, ROC, heat maps)."""

from perceptreg.figures.grids import (
    CAPTION_HEIGHT,
    LAYOUT_FORMAT,
    LAYOUT_KEY,
    PAD,
    TITLE_HEIGHT,
    WRONG,
    Cell,
    Grid,
    attack_grid,
    h_caption,
    image_grid,
    interpolation_grid,
    layers_grid,
    noise_grid,
    perception_grid,
    read_layout,
    save_png,
    stack_panels,
)

__all__ = ["CAPTION_HEIGHT", "LAYOUT_FORMAT", "LAYOUT_KEY", "PAD", "TITLE_HEIGHT", "WRONG", "Cell", "Grid",
           "attack_grid", "h_caption", "image_grid", "interpolation_grid", "layers_grid",
           "noise_grid", "perception_grid", "read_layout", "save_png", "stack_panels"]
