"""The faces worth a map at each evaluation: per attribute, the most confident right answers and
the worst mistakes (the wrong answers given with the highest probability to the class the network
said), kept batch by batch so that only a few images are ever held."""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("right", "wrong")
# The most faces mapped at one evaluation, over all attributes and both kinds: with many target
# attributes each gets fewer, so that the maps stay a few percent of an epoch (docs/maps.md).
MAPS_BUDGET = 64


def faces_per_kind(wanted: int, attributes: int) -> int:
    """Faces of each kind per attribute: ``wanted``, but at most :data:`MAPS_BUDGET` in all and
    at least 1 (4 for up to 8 attributes, 1 for 40); 0 when ``wanted`` is 0."""
    if wanted <= 0:
        return 0
    return max(1, min(wanted, MAPS_BUDGET // (2 * attributes)))


@dataclass
class Chosen:
    """One attribute's chosen faces of one kind, best first: ``images`` (m, 3, S, S) and
    ``probabilities``, ``predictions``, ``targets`` (m,); m may be 0."""

    images: torch.Tensor
    probabilities: torch.Tensor
    predictions: torch.Tensor
    targets: torch.Tensor


class MapCandidates:
    """Keeps, for each of K attributes, the ``count`` right and ``count`` wrong answers with the
    highest confidence (the probability of the predicted class) seen so far. Only their numbers
    are compared; the images are kept once each, however many attributes chose them, and a
    batch's image is copied only when it is chosen."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.reset()

    def reset(self) -> None:
        # Per kind: scores, ids into the image pool, probabilities, predictions, targets, (n, K).
        self._kept: dict[str, tuple[torch.Tensor, ...]] = {}
        self._pool: torch.Tensor | None = None

    def update(
        self, images: torch.Tensor, probabilities: torch.Tensor, predictions: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:  # fmt: skip
        """Adds a batch: ``images`` (B, 3, S, S), the rest (B, K)."""
        if self.count <= 0 or not len(images):
            return
        probabilities, predictions = probabilities.float(), predictions.long()
        targets = targets.reshape(predictions.shape).long()
        confidence = torch.where(predictions == 1, probabilities, 1 - probabilities)
        right = predictions == targets
        columns = torch.arange(predictions.shape[1], device=predictions.device)
        pooled = 0 if self._pool is None else len(self._pool)
        for kind, mask in zip(KINDS, (right, ~right), strict=True):
            score = torch.where(mask, confidence, torch.full_like(confidence, -1.0))
            # This batch's best (n, K), then the best of those and the ones kept.
            top = score.topk(min(self.count, len(score)), dim=0).indices
            batch = (score[top, columns], top + pooled, probabilities[top, columns],
                     predictions[top, columns], targets[top, columns])  # fmt: skip
            if kind in self._kept:
                batch = tuple(torch.cat(pair) for pair in zip(self._kept[kind], batch, strict=True))
            best = batch[0].topk(min(self.count, len(batch[0])), dim=0).indices
            self._kept[kind] = tuple(t[best, columns] for t in batch)
        # The pool keeps the images still chosen: the old ones, then the batch's new ones.
        used = torch.unique(torch.cat([kept[1].flatten() for kept in self._kept.values()]))
        parts = [] if self._pool is None else [self._pool[used[used < pooled]]]
        self._pool = torch.cat([*parts, images.detach()[used[used >= pooled] - pooled]])
        for kind, (scores, ids, *rest) in self._kept.items():
            self._kept[kind] = (scores, torch.searchsorted(used, ids), *rest)

    def chosen(self, attribute: int) -> dict[str, Chosen]:
        """The chosen faces of output ``attribute``, by kind (``right``, ``wrong``)."""
        result = {}
        for kind in KINDS:
            if kind not in self._kept:
                continue
            score, ids, probabilities, predictions, targets = (
                t[:, attribute] for t in self._kept[kind]
            )
            real = score >= 0
            result[kind] = Chosen(self._pool[ids[real]], probabilities[real], predictions[real],
                                  targets[real])  # fmt: skip
        return result
