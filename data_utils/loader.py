"""`BatchLoader`: (pixels, labels) batches straight from a decoded cache at memory speed.

No worker processes, no per-image Python: a batch is one fancy-index of the uint8 array, one
transfer (uint8, 4x smaller than float) and one vectorised augmentation on the target device.
Batches are pixels, uint8 unless augmentation or a resize resampled them (then float in
[0, 1]); the training step turns them into the network's input with `augment.to_input`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from data_utils.augment import BatchAugment, resize_batch


class BatchLoader:
    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: BatchAugment | None = None,
        out_size: int | None = None,
        sample_weights: np.ndarray | None = None,
        drop_last: bool = False,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels = images, np.asarray(labels, np.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.out_size = augment, out_size
        self.weights = None if sample_weights is None else torch.as_tensor(
            sample_weights, dtype=torch.float64)
        self.device = torch.device(device)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Order and augmentation depend on (seed, epoch) only: a resumed run repeats them."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, g: torch.Generator) -> torch.Tensor:
        n = len(self.labels)
        if self.weights is not None:  # class-balanced sampling, with replacement
            return torch.multinomial(self.weights, n, replacement=True, generator=g)
        return torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        aug_g = torch.Generator(self.device).manual_seed(self.seed * 100_003 + self.epoch)
        order = self._order(g).numpy()
        for b in range(len(self)):
            # sorted rows read a memory-mapped cache sequentially; order within a batch is moot
            rows = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(self.images[rows]))
            y = torch.from_numpy(self.labels[rows])
            if self.device.type == "cuda":
                x, y = x.pin_memory().to(self.device, non_blocking=True), y.to(self.device)
            # the batch is a fresh copy (fancy indexing copies): augment it in place
            x = (self.augment(x, aug_g, inplace=True) if self.augment
                 else resize_batch(x, self.out_size))
            yield x, y
