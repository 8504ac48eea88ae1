"""LoRA adapters: the on-disk store, serving (hot swap) and promotion, the one sequence that changes what serves."""
