"""lit_celeba: the CelebA gender CNN recipe on PyTorch Lightning."""

from lit_celeba.data import CelebADataModule
from lit_celeba.module import AttributeClassifier, RecipeClassifier

__all__ = ["AttributeClassifier", "CelebADataModule", "RecipeClassifier"]
