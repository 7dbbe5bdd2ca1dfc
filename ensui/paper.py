"""The supplementary's tables as shipped in `data/paper/`, read into plain Python objects.

The files are the single source of the seed catalog; this module only reads them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import yaml


def data_dir() -> Path:
    """`data/` of a source checkout, or its copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data", here.parent / "data"):
        if (candidate / "paper").is_dir():
            return candidate
    raise FileNotFoundError("ensui's data folder is missing from this installation")


def _load_yaml(name: str):
    return yaml.safe_load((data_dir() / "paper" / name).read_text())


@cache
def table_i() -> list[dict]:
    return _load_yaml("table_i.yaml")


@cache
def table_ii() -> list[dict]:
    return _load_yaml("table_ii.yaml")


@cache
def table_iii() -> list[dict]:
    return _load_yaml("table_iii.yaml")


@cache
def listing_1() -> dict:
    return json.loads((data_dir() / "paper" / "listing_1.json").read_text())


@cache
def figure_a() -> dict[str, dict[str, float]]:
    return _load_yaml("figure_a.yaml")


def normalize_id(raw: str) -> str:
    """Fold the spellings the paper uses for one id (`ResNext50_32.2`, `ResNext50_32_2`)."""
    return raw.strip().lower().replace(".", "_").replace("-", "_")
