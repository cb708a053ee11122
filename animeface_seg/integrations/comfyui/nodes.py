"""The nodes: a drop-in for the ControlNet auxiliary pack's ``AnimeFace_SemSegPreprocessor``, and
one that turns its colour map into the MASK of one face-part class.

The segmentor has the same inputs and defaults, same outputs at the same (processed) size, so a
saved workflow switches by changing only the class name. Light to import: torch and the engine
load on first execution.
"""

from __future__ import annotations

from animeface_seg.engine.palette import CLASS_NAMES

_CATEGORY = "ControlNet Preprocessors/Semantic Segmentation"


class AnimeFaceSegPreprocessor:
    """Face-part colour map and character mask of every image in the batch (animeface-seg engine)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"image": ("IMAGE",)},
            "optional": {
                "remove_background_using_abg": ("BOOLEAN", {"default": True}),
                # The networks were trained at 512 only; the original offers the same single value.
                "resolution": ("INT", {"default": 512, "min": 512, "max": 512, "step": 64}),
                "output_size": (["processed", "original"], {
                    "default": "processed",
                    "tooltip": "processed: short side 512, as the original node; original: the input's size "
                               "(nearest for the map, smooth for the mask), to line up with the image",
                }),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("IMAGE", "ABG_CHARACTER_MASK (MASK)")
    FUNCTION = "execute"
    CATEGORY = _CATEGORY
    DESCRIPTION = ("Anime face-part segmentation map (7 classes) and character mask, a faster drop-in for "
                   "AnimeFace_SemSegPreprocessor; weights in models/animeface_seg/.")

    def execute(self, image, remove_background_using_abg: bool = True, resolution: int = 512,
                output_size: str = "processed"):
        from animeface_seg.integrations.comfyui.run import segment

        return segment(image, remove_background_using_abg, resolution, output_size)


class AnimeFaceClassMask:
    """One class of a colour map as a MASK: 1 where the map shows that class's colour, 0 elsewhere.

    It reads the map the segmentor node drew (its IMAGE output, or that map saved and loaded again);
    no network runs. A pixel of no class colour (a photo, or a map resized smoothly) is an error.
    """

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "color_map": ("IMAGE", {
                    "tooltip": "the IMAGE output of Anime Face Segmentor (animeface-seg): the colour map, "
                               "at its own size or resized with nearest-neighbour only",
                }),
                "class_name": (list(CLASS_NAMES), {"default": "hair"}),
            },
        }

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("MASK",)
    FUNCTION = "execute"
    CATEGORY = _CATEGORY
    DESCRIPTION = ("The mask (B, H, W) of one face-part class (hair, eye, face, ...) of the colour map the "
                   "Anime Face Segmentor node made: 1 where the map has that class, 0 elsewhere.")

    def execute(self, color_map, class_name: str):
        from animeface_seg.integrations.comfyui.tensors import class_mask

        return (class_mask(color_map, class_name),)


NODE_CLASS_MAPPINGS = {"AnimeFaceSegPreprocessor": AnimeFaceSegPreprocessor, "AnimeFaceClassMask": AnimeFaceClassMask}
NODE_DISPLAY_NAME_MAPPINGS = {"AnimeFaceSegPreprocessor": "Anime Face Segmentor (animeface-seg)",
                              "AnimeFaceClassMask": "Anime Face Class Mask (animeface-seg)"}
