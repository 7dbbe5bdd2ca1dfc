"""Diversity metrics of teams; every metric is oriented so that higher = more diverse.

`prediction` holds the output-based metrics (methods.md §3), `attribution` the
similarity of input-attribution maps (§4), `activation` linear CKA of features (§5), and
`representation` joins the last two to an experiment's cached arrays.
"""

from ensui.engine.diversity.prediction import METRICS, Counts, prediction_diversity

__all__ = ["METRICS", "Counts", "prediction_diversity"]
