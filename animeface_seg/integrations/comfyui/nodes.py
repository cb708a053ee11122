"""The node: a drop-in for the ControlNet auxiliary pack's ``AnimeFace_SemSegPreprocessor``.

Same inputs and defaults, same outputs at the same (processed) size, so a saved workflow switches
by changing only the class name. Light to import: torch and the engine load on first execution.
"""

from __future__ import annotations


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
    CATEGORY = "ControlNet Preprocessors/Semantic Segmentation"
    DESCRIPTION = ("Anime face-part segmentation map (7 classes) and character mask, a faster drop-in for "
                   "AnimeFace_SemSegPreprocessor; weights in models/animeface_seg/.")

    def execute(self, image, remove_background_using_abg: bool = True, resolution: int = 512,
                output_size: str = "processed"):
        from animeface_seg.integrations.comfyui.run import segment

        return segment(image, remove_background_using_abg, resolution, output_size)


NODE_CLASS_MAPPINGS = {"AnimeFaceSegPreprocessor": AnimeFaceSegPreprocessor}
NODE_DISPLAY_NAME_MAPPINGS = {"AnimeFaceSegPreprocessor": "Anime Face Segmentor (animeface-seg)"}
