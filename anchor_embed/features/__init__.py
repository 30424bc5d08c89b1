"""Frozen backbones (a registry) and the feature cache they fill once, so training never re-runs them."""
