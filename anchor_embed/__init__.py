"""anchor-embed: one content vector per live-streamer, taught by ID embeddings.

Import the library without the CLI; heavy dependencies (torch, backbones) load lazily
in the modules that need them.
"""

__version__ = "0.1.0"
