"""`python -m anchor_embed.cli ...` (and `torchrun -m anchor_embed.cli ...`) run the command line."""

from anchor_embed.cli.app import main

main()
