"""The demo: a small synthetic platform and the whole pipeline run on it."""
