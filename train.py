"""Train a recipe: ``python train.py recipe=resnet20_cifar10 [key=value ...]`` (default: the seconds-long smoke run)."""
import hydra
from omegaconf import DictConfig

from rmp_zoo.training.run import train


@hydra.main(version_base="1.3", config_path="recipes", config_name="train")
def main(cfg: DictConfig) -> None:
    for key, value in train(cfg).items():
        print(f"{key}: {value:.4f}")


if __name__ == "__main__":
    main()
