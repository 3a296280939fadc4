"""Standard training recipes for the baseline families: what torchvision's reference scripts
(references/classification/README.md) train each family with, scaled to the final job's batch
size and epochs. A baseline is trained with the searched recipe and with its family's standard
one (at the searched input size and at any of final.baseline_image_sizes), and the better on
validation is used: the searched recipe was tuned for the searched net,
and a comparison against a baseline the recipe cannot train says nothing about the baseline.
With `--reuse-from RUN` the recipe RUN chose for the baseline is tried too (`Recipe.REUSED`):
one more chance for the baseline, and where it wins, RUN's trainings of it are taken over.
Under the accurate claim the searched net is tried at the same sizes with its own recipe
(`sizes_for`; `claims.size_cap` says when and up to which size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from tune_jobs.outcome import StrEnum
from tune_jobs.trial.space import TrainParams


class Recipe(StrEnum):
    """Which recipe a model trained with."""

    SEARCHED = "searched"  # the chosen trial's, as the search found it
    STANDARD = "standard"  # its family's standard recipe (`STANDARD_RECIPES`)
    REUSED = "reused"  # the recipe the run of `--reuse-from` chose for this baseline


@dataclass(frozen=True)
class StandardRecipe:
    optimizer: str  # a name of tune_jobs.trial.engine.OPTIMIZERS
    lr: float  # at `batch`; scaled linearly to the batch size used
    batch: int  # torchvision's total batch (GPUs x per-GPU batch)
    weight_decay: float
    label_smoothing: float = 0.0
    source: str = ""

    def apply(self, searched: TrainParams) -> TrainParams:
        """This recipe with the searched run's data pipeline (image size, batch size,
        augmentation), so that only the optimisation differs. The schedule is a warm-up
        and cosine decay over the epochs, as torchvision's recent recipes use, in place of
        their hundreds-of-epochs step decays."""
        return dataclasses.replace(
            searched, optimizer=self.optimizer, lr=self.lr * searched.batch_size / self.batch,
            weight_decay=self.weight_decay, schedule="cosine",
            label_smoothing=self.label_smoothing)


# Family (a prefix of the torchvision model name) -> its reference recipe.
STANDARD_RECIPES: dict[str, StandardRecipe] = {
    "mobilenet_v3": StandardRecipe("rmsprop_torchvision", 0.064, 8 * 128, 1e-5,
                                   source="torchvision MobileNetV3: RMSprop lr 0.064, wd 1e-5, "
                                          "batch 8x128"),
    "mobilenet_v2": StandardRecipe("sgd", 0.045, 8 * 32, 4e-5,
                                   source="torchvision MobileNetV2: SGD lr 0.045, wd 4e-5, "
                                          "batch 8x32"),
    "shufflenet_v2": StandardRecipe("sgd", 0.5, 8 * 128, 2e-5, label_smoothing=0.1,
                                    source="torchvision ShuffleNetV2: SGD lr 0.5, wd 2e-5, "
                                           "label smoothing 0.1, warm-up + cosine, batch 8x128"),
    # any other net: torchvision's original ResNet recipe, the reference scripts' defaults
    "": StandardRecipe("sgd", 0.1, 8 * 32, 1e-4,
                       source="torchvision's defaults (ResNet): SGD lr 0.1, wd 1e-4, batch 8x32"),
}


SEARCHED_SOURCE = "the searched trial's"


def standard_recipe(name: str) -> StandardRecipe:
    """The recipe of the longest family prefix of `name` (`tv/` stripped)."""
    name = name.removeprefix("tv/")
    family = max((f for f in STANDARD_RECIPES if name.startswith(f)), key=len)
    return STANDARD_RECIPES[family]


def recipe_label(recipe: Recipe, image_size: int) -> str:
    """A job name's suffix for a recipe at an input size: 'standard-96px'."""
    return f"{recipe}-{image_size}px"


@dataclass(frozen=True)
class RecipeChoice:
    """One way a baseline is tried: a recipe at an input size (in `params.image_size`)."""

    recipe: Recipe
    params: TrainParams
    source: str

    @property
    def label(self) -> str:
        return recipe_label(self.recipe, self.params.image_size)


def at_sizes(searched: TrainParams, sizes: Sequence[int] = ()) -> list[TrainParams]:
    """The searched run's parameters at its own input size, then at each of `sizes`, once each."""
    return [dataclasses.replace(searched, image_size=size)
            for size in dict.fromkeys([searched.image_size, *sizes])]


def recipes_for(name: str, searched: TrainParams, sizes: Sequence[int] = ()
                ) -> list[RecipeChoice]:
    """The ways a baseline `name` is tried: each recipe at the searched input size and at
    each of `sizes` (the searched run's data pipeline otherwise)."""
    standard = standard_recipe(name)
    return [choice for at in at_sizes(searched, sizes)
            for choice in (RecipeChoice(Recipe.SEARCHED, at, SEARCHED_SOURCE),
                           RecipeChoice(Recipe.STANDARD, standard.apply(at), standard.source))]


def sizes_for(searched: TrainParams, sizes: Sequence[int]) -> list[RecipeChoice]:
    """The ways the searched net is tried when it may ship at a baseline's input size: its
    own recipe at its own size and at each of `sizes`."""
    return [RecipeChoice(Recipe.SEARCHED, at, SEARCHED_SOURCE) for at in at_sizes(searched, sizes)]


__all__ = ["STANDARD_RECIPES", "Recipe", "RecipeChoice", "StandardRecipe", "recipe_label",
           "recipes_for", "sizes_for", "standard_recipe"]
