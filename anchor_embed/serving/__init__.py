"""Serving and batch jobs on trained models: embed, index, similar, dedup, scatter. Lookups never import torch."""
