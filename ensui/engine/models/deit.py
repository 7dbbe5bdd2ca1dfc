"""DeiT rows of Table i (family "deit"), timm's VisionTransformer.

Paper scale: `VisionTransformer(patch_size, embed_dim, depth, num_heads, img_size)`; the
row's 192/12/3/16 is timm's `deit_tiny_patch16_224` (5.7 M parameters). No distillation
token: Table i trains DeiT-tiny with the plain supervised recipe.

Tiny scale, for 32 px images:
- kept: the number of heads, the MLP ratio 4, class token and learned position
  embeddings, final norm, CLS-token pooling.
- scaled: embed_dim / 4 (192 -> 48, head width 16), patch_size / 4 (16 -> 4: 8×8 = 64
  tokens at 32 px; the patch is 1/8 of the image instead of 1/14), depth / 3 (12 -> 4).
"""

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .normalize import Normalized
from .pre_logits import timm_pre_logits
from .registry import Scale, register_family


def vision_transformer(
    arch: dict, scale: Scale, num_classes: int, image_size: int, **extra
) -> VisionTransformer:
    """The row's ViT at `scale`; num_classes=0 gives a headless backbone (DINO); `extra`
    passes timm options."""
    if scale is Scale.PAPER:
        dims = arch["embed_dim"], arch["depth"], arch["patch_size"]
    else:
        dims = arch["embed_dim"] // 4, max(1, arch["depth"] // 3), max(1, arch["patch_size"] // 4)
    embed_dim, depth, patch_size = dims
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=arch["num_heads"],
        num_classes=num_classes,
        **extra,
    )


@register_family("deit")
def build_deit(arch: dict, scale: Scale, num_classes: int, image_size: int) -> nn.Module:
    return Normalized(vision_transformer(arch, scale, num_classes, image_size), timm_pre_logits)
