"""Lightning callbacks: TensorBoard dashboards, the prediction CSV writer and exact resume."""

from __future__ import annotations

from lit_celeba.attributes import attribute_list


def output_attributes(*owners: object) -> list[str]:
    """The attributes a network outputs, in output order: the ``target_attrs`` (or
    ``target_attr`` setting) of the first of ``owners`` that has them (the model first, as it
    fixes the outputs; then the data module)."""
    for owner in owners:
        names = getattr(owner, "target_attrs", None) or getattr(owner, "target_attr", None)
        if names:
            return attribute_list(names)
    raise ValueError("neither the model nor the data module names its target attributes")
