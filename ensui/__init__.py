"""ensui: train heterogeneous ensembles, evaluate them under corruption, relate diversity to gain."""

__version__ = "0.1.0"
