"""Train a recipe: ``python train.py recipe=resnet20_cifar10 [key=value ...]`` (default: the seconds-long smoke run).

Each run folder holds Hydra's ``.hydra/`` (config, overrides) and ``train.log`` next to the run's own outputs;
``python train.py -m ... seed=0,1`` sweeps, and sweepers optimise the value ``main`` returns (``optimized_metric``).
"""
import logging

import hydra
from omegaconf import DictConfig

from rmp_zoo.training.run import metric_value, train

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="recipes", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return ``optimized_metric``'s value, which Hydra hands to the sweeper (None: nothing to optimise)."""
    results = train(cfg)
    for key, value in results.items():
        log.info("%s: %.4f", key, value)  # console and train.log
    return metric_value(results, cfg.get("optimized_metric"))


if __name__ == "__main__":
    logging.captureWarnings(True)  # Python's and Lightning's warnings reach train.log too, not only the console
    main()
