"""The fusion model: modality tokens of a streamer -> one unit vector; its batcher, masked views and storage."""
