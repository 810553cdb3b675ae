"""The generated faces' attributes: which of CelebA's 40 a face has, drawn with CelebA-like base
rates and the obvious correlations (smiling and an open mouth, age and grey hair, ...), and, for
the spurious-correlation demos, two of them tied together. :mod:`.faces` draws a face with them.
"""

from __future__ import annotations

import numpy as np

from lit_celeba.attributes import CELEBA_ATTRIBUTES as ATTRIBUTE_NAMES

# Not drawn, so their labels are coin flips already; label noise only touches the drawn ones.
_INVISIBLE = {"Attractive", "High_Cheekbones", "Oval_Face", "Pointy_Nose", "Straight_Hair"}
VISIBLE = np.array([name not in _INVISIBLE for name in ATTRIBUTE_NAMES])
# Hair colours: four labelled ones, then dark brown and auburn, which CelebA has no label for
# (their colours are faces.HAIR_RGB, in this order).
HAIR_LABELS = ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair", None, None)


def sample_traits(rng: np.random.Generator) -> dict[str, bool]:
    """The true attributes, with CelebA-like base rates and the obvious correlations."""
    r = rng.random
    t = dict.fromkeys(ATTRIBUTE_NAMES, False)
    male, young, smiling = r() < 0.42, r() < 0.77, r() < 0.48
    t.update(Male=male, Young=young, Smiling=smiling, Eyeglasses=r() < 0.065)
    t["Mouth_Slightly_Open"] = r() < (0.75 if smiling else 0.2)
    t["High_Cheekbones"] = r() < (0.75 if smiling else 0.15)
    t["Bald"] = male and r() < (0.03 if young else 0.12)
    t["Wearing_Hat"] = r() < 0.048
    if not t["Bald"]:
        probs = np.array([0.25, 0.21, 0.03 if male else 0.25, 0.01 if young else 0.22, 0, 0])
        probs[4:] = (1 - probs.sum()) / 2
        t["_hair"] = choice = int(rng.choice(len(probs), p=probs))
        if HAIR_LABELS[choice]:
            t[HAIR_LABELS[choice]] = True
        t["Bangs"] = r() < (0.06 if male else 0.22)
        t["Receding_Hairline"] = r() < (0.04 if young else 0.2)
        t["Wavy_Hair"] = r() < (0.18 if male else 0.42)
        t["Straight_Hair"] = not t["Wavy_Hair"] and r() < 0.3
    if male:
        beard = rng.choice(4, p=[0.47, 0.27, 0.14, 0.12])  # none, stubble, full, goatee
        t["5_o_Clock_Shadow"], t["Goatee"], t["_full_beard"] = beard == 1, beard == 3, beard == 2
        t["Mustache"] = (beard == 2 and r() < 0.6) or (beard == 3 and r() < 0.4)
        t["Sideburns"] = not t["Bald"] and (beard == 2 or r() < 0.08)
        t["Wearing_Necktie"] = r() < 0.17
    else:
        t["Heavy_Makeup"] = r() < 0.62
        t["Wearing_Lipstick"] = t["Heavy_Makeup"] or r() < 0.5
        t["Rosy_Cheeks"] = r() < 0.11
        t["Wearing_Necklace"] = r() < 0.21
    t["No_Beard"] = not (t["Goatee"] or t.get("_full_beard", False))
    t["Bags_Under_Eyes"] = r() < (0.12 if young else 0.55)
    t["Pale_Skin"] = r() < 0.043
    t["Wearing_Earrings"] = r() < (0.02 if male else 0.3)
    t["Blurry"] = r() < 0.05
    t["Chubby"] = r() < (0.03 + 0.04 * male + 0.06 * (not young))
    t["Double_Chin"] = r() < (0.4 if t["Chubby"] else 0.025)
    t["Big_Lips"], t["Narrow_Eyes"] = r() < 0.24, r() < 0.115
    t["Bushy_Eyebrows"] = r() < (0.25 if male else 0.08)
    t["Arched_Eyebrows"] = r() < (0.1 if male else 0.4)
    t["Big_Nose"] = r() < (0.4 if male else 0.1)
    t["Attractive"] = r() < (0.7 if not male else 0.3) * (1 if young else 0.5)
    t["Oval_Face"], t["Pointy_Nose"] = r() < 0.28, r() < 0.28
    return t


# (target, spurious, share): the share of faces whose spurious trait equals their target trait.
Correlation = tuple[str, str, float]
# Rejection sampling draws the traits again until they match; the rarest pair of the generator's
# own rates (e.g. a blond man, about 1 %) takes some hundred cheap draws, never this many.
_MAX_DRAWS = 100_000


def correlated_traits(rng: np.random.Generator, correlate: Correlation) -> dict[str, bool]:
    """Traits whose ``spurious`` value equals the ``target`` value with probability ``share``;
    the target keeps its own rate, and every other trait its rates given the two (rejection
    sampling, so a blond man drawn this way still looks like the generator's blond men)."""
    target, spurious, share = correlate
    traits = sample_traits(rng)
    want_target = traits[target]
    want_spurious = want_target if rng.random() < share else not want_target
    for _ in range(_MAX_DRAWS):
        if traits[target] == want_target and traits[spurious] == want_spurious:
            return traits
        traits = sample_traits(rng)
    raise ValueError(f"the generator never draws {target}={want_target:d} with {spurious}="
                     f"{want_spurious:d}; choose attributes that can occur together")  # fmt: skip
