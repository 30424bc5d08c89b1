"""Transfer from ID embeddings: mining behavioural neighbours, filtering them by content, methods to train on them."""
