"""Catalog architectures: a family registry and one factory (see factory.build_model)."""

from .factory import build_model, count_parameters, load_weights
from .registry import Scale, families, register_family

__all__ = [
    "Scale",
    "build_model",
    "count_parameters",
    "families",
    "load_weights",
    "register_family",
]
