"""Inputs and their contracts: streamer records, ID embeddings, media frames, key tables, JSON Schemas."""
