"""Scoring content vectors against behavioural neighbours: metrics, references and the evaluate table."""
