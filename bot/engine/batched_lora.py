"""A mixed-adapter batch as two batched matmuls per LoRA layer (the S-LoRA / Punica "BGMV" idea).

peft's mixed batch (`adapter_names=`) loops over the batch's adapters in every LoRA layer at every step: for each
adapter, gather its rows, two small matmuls, scatter back. With 8 adapters that is ~60 small ops per layer per
token, which on a CPU costs more than the LoRA arithmetic itself. Here the batch's adapters are stacked once per
batch, per layer: A as (U+1, in, r) and B*scaling as (U+1, r, out), zero-padded to the largest rank, slot U all
zeros for the base rows. Each step then runs the base layer (peft's adapters disabled) and adds
bmm(bmm(x, A[row_slot]), B[row_slot]): the same sum, in two batched matmuls whatever the number of adapters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


@contextmanager
def batched_lora(peft_model: Any, row_adapters: Sequence[str | None]) -> Iterator[None]:
    """Within the block, `peft_model` writes row i with the peft adapter `row_adapters[i]` (None: the base model).
    The rows must be the batch dimension of every forward in the block (sampling; no beam search)."""
    import torch
    from peft.tuners.lora import LoraLayer

    names = [n for n in dict.fromkeys(row_adapters) if n is not None]
    slot = {n: i for i, n in enumerate(names)}
    rows = [slot[n] if n is not None else len(names) for n in row_adapters]
    handles = []
    for module in peft_model.modules():
        if not isinstance(module, LoraLayer):
            continue
        present = [n for n in names if n in module.lora_A]
        if not present:
            continue
        first = module.lora_A[present[0]].weight  # (r, in)
        out_features = module.lora_B[present[0]].weight.shape[0]
        rank = max(module.r[n] for n in present)
        a = torch.zeros(len(names) + 1, first.shape[1], rank, dtype=first.dtype, device=first.device)
        b = torch.zeros(len(names) + 1, rank, out_features, dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for n in present:
                r = module.r[n]
                a[slot[n], :, :r] = module.lora_A[n].weight.T
                b[slot[n], :r, :] = module.lora_B[n].weight.T * module.scaling[n]
        index = torch.tensor(rows, device=first.device)

        def add_lora(mod: Any, args: tuple[Any, ...], output: Any, a: Any = a, b: Any = b, index: Any = index) -> Any:
            x = args[0]
            flat = x.dim() == 2
            x3 = x.unsqueeze(1) if flat else x  # (B, T, in)
            delta = torch.bmm(torch.bmm(x3.to(a.dtype), a[index]), b[index])  # (B, T, out)
            return output + (delta.squeeze(1) if flat else delta).to(output.dtype)

        handles.append(module.register_forward_hook(add_lora))
    try:
        with peft_model.disable_adapter():  # the LoRA layers run their base layer only; the hooks add the rest
            yield
    finally:
        for h in handles:
            h.remove()
