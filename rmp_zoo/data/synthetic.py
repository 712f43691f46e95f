"""Generated image classification data: learnable in seconds, for smoke runs and tests."""
from __future__ import annotations

import numpy as np

from .arrays import ArrayDataModule, ImageArrays


class SyntheticDataModule(ArrayDataModule):
    """Each class is a fixed random low-frequency pattern; samples are that pattern plus noise."""

    name = "synthetic"

    def __init__(self, num_classes: int = 10, train_size: int = 1024, test_size: int = 256, image_size: int = 32,
                 noise: float = 40.0, **kwargs) -> None:
        kwargs.setdefault("val_size", train_size // 8)
        super().__init__(num_classes=num_classes, **kwargs)
        self.train_size, self.test_size, self.image_size, self.noise = train_size, test_size, image_size, noise

    def load_arrays(self) -> ImageArrays:
        rng = np.random.default_rng(self.seed)
        coarse = rng.uniform(0, 255, (self.num_classes, 4, 4, 3))
        templates = coarse.repeat(self.image_size // 4, 1).repeat(self.image_size // 4, 2)

        def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, self.num_classes, n)
            x = templates[y] + rng.normal(0, self.noise, (n, self.image_size, self.image_size, 3))
            return np.clip(x, 0, 255).astype(np.uint8), y

        (x_train, y_train), (x_test, y_test) = draw(self.train_size), draw(self.test_size)
        return ImageArrays(x_train, y_train, x_test, y_test, [f"class{i}" for i in range(self.num_classes)])
