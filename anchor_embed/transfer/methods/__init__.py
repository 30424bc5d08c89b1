"""Transfer methods: each a module with one `TransferMethod` subclass, registered here by name.

Adding a method is one new module plus one line below; `--method`, config validation, the CLI help and the
benchmark all read this table.
"""

from anchor_embed.registry import Registry

METHODS = Registry("transfer method", {
    "contrastive": "anchor_embed.transfer.methods.contrastive:Contrastive",
    "feature": "anchor_embed.transfer.methods.feature:FeatureDistillation",
    "rkd": "anchor_embed.transfer.methods.rkd:RelationalDistillation",
    "cluster": "anchor_embed.transfer.methods.cluster:ClusterLabels",
    "clcrec": "anchor_embed.transfer.methods.clcrec:ContentIdContrast",
    "aldi": "anchor_embed.transfer.methods.aldi:ReliabilityDistillation",
})
