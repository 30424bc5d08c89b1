"""`python -m anchor_embed.cli ...` (and `torchrun -m anchor_embed.cli ...`) run the command line."""

import os

from anchor_embed.cli.app import main

if int(os.environ.get("WORLD_SIZE", "1")) > 1:          # a torchrun rank: ended by exit_rank, not teardown
    from anchor_embed.training.distributed import exit_rank

    try:
        main()
    except SystemExit as exc:
        exit_rank(0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1)
    exit_rank(0)
else:
    main()
