"""Severity constants for the corruptions in `corruptions.py`.

Two tables, one row of five severities per corruption:

* ``imagenet``: the ImageNet-C constants of Hendrycks & Dietterich (2019) as shipped by
  the `imagecorruptions` package (fork `imagecorruptions-imaug` 1.1.5), made for 224 px.
* ``small``: the CIFAR-10-C constants of Hendrycks' ``make_cifar_c.py``, made for 32 px
  and much milder (small images lose their content under the ImageNet constants).

Lengths in pixels (blur radii and sigmas, motion kernels, snow flakes, glass-blur
displacements, spatter blobs, the frost texture) are stated at the table's reference
size and scaled by ``min(H, W) / ref_size`` in the ops, so that a severity means the
same visual damage at another resolution. Zoom factors, pixelate ratios, the fog map
and the elastic field are already relative to the image size in the originals.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Table:
    name: str
    ref_size: int            # image side the pixel lengths below were tuned for
    fog_map_factor: int      # plasma map side = next_pow2(image side) * factor
    frost_scale: float       # frost texture magnification (CIFAR-C shrank the photos 5x)
    frost_palettes: tuple    # ((mean RGB), (std RGB)) of the frost photo crops, 0-255
    rows: MappingProxyType   # corruption name -> tuple of 5 severity parameters


def _elastic_imagenet(alphas):
    # The fork draws U(-0.005 H, 0.005 H), smooths it with sigma 0.01 H and multiplies
    # by alpha: amplitude relative to H is alpha * 0.005. (amplitude, sigma, affine).
    return tuple((a * 0.005, 0.01, 0.0) for a in alphas)


# Colour statistics of random crops of the six frost photos bundled with imagecorruptions
# (224 px crops as the fork takes them; 32 px crops of the photos shrunk 5x as
# make_cifar_c.py takes them, which draws from the first five only). The synthetic frost
# texture gets one of these, so it brightens and tints images as the photos do.
_FROST_224 = (
    ((79.1, 149.1, 165.2), (24.5, 14.3, 13.3)), ((197.6, 201.9, 211.2), (19.5, 20.1, 20.9)),
    ((197.5, 201.9, 211.1), (19.4, 20.0, 20.7)), ((145.0, 159.8, 172.7), (25.9, 26.0, 27.3)),
    ((99.6, 111.0, 122.9), (36.5, 36.1, 35.4)), ((67.7, 87.6, 95.2), (31.2, 37.7, 43.5)))
_FROST_32 = (
    ((76.2, 148.0, 164.8), (15.8, 10.0, 9.8)), ((198.5, 202.9, 212.2), (12.0, 12.4, 13.0)),
    ((199.4, 203.7, 213.2), (12.3, 12.8, 13.5)), ((143.3, 158.1, 170.8), (14.1, 14.2, 15.6)),
    ((101.5, 112.8, 124.7), (23.6, 23.2, 22.4)))

IMAGENET = Table(
    name="imagenet", ref_size=224, fog_map_factor=1, frost_scale=1.0, frost_palettes=_FROST_224,
    rows=MappingProxyType({
        "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
        # (disk radius, anti-alias sigma)
        "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
        # (sigma, max displacement, iterations)
        "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        # (radius, sigma) of ImageMagick's motion kernel
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        # np.arange(start, stop, step) of zoom factors
        "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02),
                      (1, 1.26, 0.02), (1, 1.31, 0.03)),
        # (mean, std, zoom, threshold, blur radius, blur sigma, image mix)
        "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                 (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                 (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
        # (image weight, frost weight)
        "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
        # (fog amount, plasma wibble decay)
        "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
        "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
        "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
        # (displacement amplitude / H, smoothing sigma / side, affine jitter / H)
        "elastic_transform": _elastic_imagenet((250 * 0.05, 250 * 0.065, 250 * 0.085,
                                                250 * 0.1, 250 * 0.12)),
        "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        # (mean, std, sigma, threshold, intensity or mud sigma, mud?)
        "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                    (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                    (0.67, 0.4, 1, 0.65, 1.5, 1)),
        # (saturation factor, saturation offset)
        "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    }),
)

SMALL = Table(
    name="small", ref_size=32, fog_map_factor=8, frost_scale=0.2, frost_palettes=_FROST_32,
    rows=MappingProxyType({
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01),
                      (1, 1.21, 0.01), (1, 1.26, 0.01)),
        "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                 (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                 (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
        "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        # make_cifar_c.py: (alpha, sigma, affine) = IMSIZE * these
        "elastic_transform": ((0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                              (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
        "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                    (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                    (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
        "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    }),
)

TABLES = MappingProxyType({"imagenet": IMAGENET, "small": SMALL})
