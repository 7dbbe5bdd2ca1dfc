"""Diversity metrics of teams; every metric is oriented so that higher = more diverse.

`prediction` holds the output-based metrics (methods.md §3); attribution and activation
diversity live beside it in their own modules.
"""

from ensui.engine.diversity.prediction import METRICS, Counts, prediction_diversity

__all__ = ["METRICS", "Counts", "prediction_diversity"]
