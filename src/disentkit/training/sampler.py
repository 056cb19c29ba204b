"""Random training batches with a resumable generator.

Every step draws ``global_batch`` indices uniformly with replacement (as disentanglement_lib's
training input does) from one generator that is seeded identically on every process; process
``rank`` takes its slice. One process with batch ``2B`` therefore sees exactly the images that two
DDP processes with batch ``B`` see together, and the generator state makes resume exact.
"""

from __future__ import annotations

import torch


class BatchSampler:
    def __init__(self, dataset_size: int, global_batch: int, seed: int) -> None:
        if dataset_size <= 0:
            raise ValueError("the dataset is empty")
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.generator = torch.Generator().manual_seed(seed)

    def next_indices(self, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        indices = torch.randint(
            self.dataset_size, (self.global_batch,), generator=self.generator, dtype=torch.int64
        )
        per_rank = self.global_batch // world_size
        return indices[rank * per_rank : (rank + 1) * per_rank]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
