"""The README's recipe for a new transfer method is real code that trains through the registry's interface."""

import re
from pathlib import Path

import numpy as np
import torch

from anchor_embed.transfer.methods import METHODS
from anchor_embed.transfer.methods.base import TransferData

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_method_recipe_runs():
    text = README.read_text()
    code = re.search(r"```python\n(class Mine\(TransferMethod\):.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec("from anchor_embed.config import RunConfig\n"
         "from anchor_embed.transfer.methods.base import TransferMethod\n" + code, ns)
    mine = ns["Mine"]
    rng = np.random.default_rng(0)
    data = TransferData(rng.normal(size=(20, 4)).astype(np.float32), np.arange(20), np.arange(0), np.arange(0))
    method = mine(8, data, mine.Params(weight=0.5))
    table = torch.nn.functional.normalize(torch.randn(20, 8, requires_grad=True), dim=1)
    loss = method.loss(lambda rows: table[torch.as_tensor(rows)], method.sample(rng, 8))
    assert torch.isfinite(loss) and loss.requires_grad
    # the registration line has the form of the registry's own entries, which load
    assert re.search(r'`"mine": "anchor_embed\.transfer\.methods\.mine:Mine",`', text)
    source = (Path(__file__).resolve().parents[2] / "anchor_embed/transfer/methods/__init__.py").read_text()
    for name, module, cls in re.findall(r'"(\w+)": "anchor_embed\.transfer\.methods\.(\w+):(\w+)"', source):
        assert METHODS.load(name).__name__ == cls and METHODS.load(name).__module__.endswith(module)
