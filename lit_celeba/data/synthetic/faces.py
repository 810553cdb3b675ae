"""Drawing the generated faces: shapes whose attributes are visible cues (hair length for
``Male``, mouth curve for ``Smiling``, frames for ``Eyeglasses``, wrinkles and grey hair for
``Young``, ...), so that a small CNN can learn them. Which attributes a face has is
:mod:`.traits`. Nothing here writes a file; the package's ``generate_celeba`` lays the faces out in
CelebA's formats.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from lit_celeba.attributes import CELEBA_ATTRIBUTES as ATTRIBUTE_NAMES
from lit_celeba.data.synthetic.painting import (
    HEIGHT,
    NOISE,
    WIDTH,
    XS,
    YS,
    arc,
    ellipse,
    ellipse_cover,
    hair_texture,
    line,
    paint,
    ring,
    soft,
    window,
)
from lit_celeba.data.synthetic.traits import (
    VISIBLE,
    Correlation,
    correlated_traits,
    sample_traits,
)

# The colour of each of traits.HAIR_LABELS, in its order.
HAIR_RGB = (
    (0.08, 0.07, 0.07),
    (0.38, 0.24, 0.14),
    (0.88, 0.74, 0.48),
    (0.72, 0.72, 0.72),
    (0.21, 0.14, 0.10),
    (0.52, 0.25, 0.13),
)


def _draw(rng: np.random.Generator, t: dict) -> Image.Image:
    def u(low=0.0, high=1.0, size=None):
        # float32 colours keep every array float32: float64 would double the work.
        value = rng.uniform(low, high, size)
        return value if size is None else value.astype(np.float32)

    # Channel-first planes: numpy is slow at broadcasting over a last axis of length 3.
    img = np.empty((3, HEIGHT, WIDTH), np.float32)
    # Background: a two-colour gradient, mostly light like the real photos' backdrops.
    c0 = u(0.3, 0.95, 3)
    c1 = np.clip(c0 + u(-0.2, 0.2, 3), 0, 1)
    wx = u(-1, 1)
    grad = np.clip(wx * (XS / WIDTH - 0.5) + (1 - abs(wx)) * YS[:, None] / HEIGHT, 0, 1)
    np.multiply((c1 - c0)[:, None, None], grad, out=img)  # in place: no full-size temporaries
    img += c0[:, None, None]

    male, young = t["Male"], t["Young"]
    s = u(0.94, 1.06)
    cx, eye_y = 89 + u(-3, 3), 110 + u(-3, 3)
    fax = s * (46 if male else 43) * (1.08 if t["Chubby"] else 1.0)
    fay = 58 * s
    fcy = eye_y + 14 * s
    chin, top = fcy + fay, fcy - fay
    light, dark = np.array([0.95, 0.80, 0.69], np.float32), np.array([0.42, 0.28, 0.2], np.float32)
    skin = light + (dark - light) * rng.beta(2, 2.5)
    if t["Pale_Skin"]:
        skin = np.array([0.98, 0.90, 0.85], np.float32) - u(0, 0.04)
    skin = np.clip(skin * (1 if young else 0.95) + u(-0.03, 0.03, 3), 0, 1)
    hair = np.array(HAIR_RGB[t.get("_hair", 4)], np.float32)
    hair = np.clip(hair * u(0.85, 1.15) + u(-0.03, 0.03, 3), 0, 1)
    if t["Gray_Hair"]:
        hair = np.full(3, u(0.6, 0.85), np.float32)
    brow = hair * 0.55 if not t["Bald"] else skin * 0.35

    for side in (-1, 1):  # ears first: long hair hides them
        ellipse(img, cx + side * (fax + 1), eye_y + 12 * s, 6 * s, 12 * s, skin * 0.9)
    # Long hair behind the head, down to the shoulders: the main Male cue (with the jaw).
    long_hair = not t["Bald"] and (not male or u() < 0.08)
    cap_ay = fay + s * (16 if not male else 10) + u(0, 6)
    if long_hair:
        bottom = u(168, 216) if not male else u(135, 150)
        hw = fax + u(12, 22) * s
        win, yy, xx = window(cx - hw * 1.1, cx + hw * 1.1, fcy - cap_ay - 6, bottom)
        if t["Wavy_Hair"]:
            phase = u(0, 2 * math.pi)
            wave = [1 + 0.035 * math.sin(y / 5 + phase) for y in yy[:, 0]]
            hw = hw * np.array(wave, np.float32)[:, None]
        mid, half = (fcy - cap_ay + bottom) / 2, (bottom - fcy + cap_ay) / 2
        _, cover = ellipse_cover(yy, xx, cx, mid, hw, half, p=4.0)
        paint(img, win, cover, hair_texture(rng, hair, win))
    ellipse(img, cx, chin + 60, 17 * s, 60, skin * 0.85)  # neck
    clothes = u(0.05, 0.9, 3)
    ellipse(img, cx, HEIGHT + 30, 100 * s, 50, clothes)
    if t["Wearing_Necktie"]:
        win, yy, xx = window(cx - 40, cx + 40, HEIGHT - 22, HEIGHT)
        y0 = HEIGHT - 22
        paint(img, win, soft(12 + (yy - y0) * 0.7 - np.abs(xx - cx)), (0.95, 0.95, 0.93))
        paint(img, win, soft(3.5 + (yy - y0) * 0.2 - np.abs(xx - cx)), u(0, 0.8, 3))
    else:
        ellipse(img, cx, HEIGHT - 20, 15 * s, 9, skin * 0.85)  # neckline
    if t["Wearing_Necklace"]:
        gold = (0.92, 0.8, 0.4) if u() < 0.6 else (0.95, 0.95, 0.92)
        arc(img, cx, chin + 20 * s, 16 * s, -8 * s, 2.4, gold)

    # Face: squarer jaw for men (superellipse below the centre line), shaded towards the edges.
    win, yy, xx = window(cx - fax, cx + fax, top, chin)
    p = np.where(yy > fcy, np.float32(3.0 if male else 2.2), np.float32(2.0))
    rho, cover = ellipse_cover(yy, xx, cx, fcy, fax, fay, p)
    paint(img, win, cover, skin[:, None, None] * (1 - 0.12 * np.minimum(rho, 1) ** 2))
    if t["Double_Chin"]:
        arc(img, cx, chin + 5 * s, 20 * s, -4 * s, 2.2, skin * 0.7, 0.8)
    if not young:  # forehead wrinkles; the hair drawn next hides those under the hairline
        for k in range(3):
            arc(img, cx, eye_y - (19 + 6 * k) * s, 20 * s, 1.5, 2.6, skin * 0.55, 0.9)

    # Hair on top, down to a hairline; women's reaches further down the sides to meet long hair.
    cap_cy = fcy - 6 * s
    cap_ax = fax + s * (5 if male else 9)
    win, yy, xx = window(cx - cap_ax, cx + cap_ax, cap_cy - cap_ay, eye_y + 40)
    _, cover = ellipse_cover(yy, xx, cx, cap_cy, cap_ax, cap_ay)
    if t["Bald"]:
        paint(img, win, cover * soft(fcy - yy), skin)
    else:
        depth = u(10, 18) * s - (9 if t["Receding_Hairline"] else 0)
        drop = (30 if male else 48) * s + (12 if t["Receding_Hairline"] else 0)
        hairline = top + depth + drop * ((xx - cx) / fax) ** 2
        if t["Bangs"]:
            fringe = eye_y - u(12, 16) * s + 2 * np.sin((xx - cx) / 3)
            hairline = np.where(np.abs(xx - cx) < fax * 0.9, np.maximum(hairline, fringe), hairline)
        paint(img, win, cover * soft(hairline - yy), hair_texture(rng, hair, win))
    if t["Sideburns"]:
        for side in (-1, 1):
            ellipse(img, cx + side * (fax - 4 * s), eye_y + 8 * s, 4.5 * s, 15 * s, hair, 0.9)

    # Beards, before the mouth so the lips stay visible.
    if male and (t["5_o_Clock_Shadow"] or t.get("_full_beard")):
        win, yy, xx = window(cx - fax, cx + fax, eye_y + 20 * s, chin + 4)
        reach = 0 if t["5_o_Clock_Shadow"] else 4 * s  # a full beard grows past the chin
        _, cover = ellipse_cover(yy, xx, cx, fcy, fax, fay + reach, np.float32(3))
        cover = cover * np.clip((yy - eye_y - 24 * s) / 6, 0, 1)
        if t["5_o_Clock_Shadow"]:
            stubble = (np.clip(hair * 0.5, 0.05, 0.25) + skin * 0.4) / 1.4
            paint(img, win, cover * u(0.25, 0.45), hair_texture(rng, stubble, win))
        else:
            paint(img, win, cover * 0.92, hair_texture(rng, hair * 0.85, win))
    if t["Goatee"]:
        ellipse(img, cx, chin - 10 * s, 12 * s, 13 * s, hair * 0.85, 0.92)
    mouth_y = eye_y + 47 * s
    if t["Mustache"]:
        ellipse(img, cx, mouth_y - 7 * s, 15 * s, 3.5 * s, hair * 0.85, 0.92)

    # Eyes, brows, makeup, bags.
    for side in (-1, 1):
        ex = cx + side * 24 * s
        if t["Heavy_Makeup"]:
            ellipse(img, ex, eye_y - 4 * s, 11 * s, 6 * s, u(0.15, 0.55, 3), 0.5)
        arch = (4.5 if t["Arched_Eyebrows"] else 1.5) * s
        thick = (4.6 if t["Bushy_Eyebrows"] else 2.6) * s
        arc(img, ex, eye_y - 10 * s - arch, 12 * s, arch, thick, brow)
        if t["Bags_Under_Eyes"] or not young:
            arc(img, ex, eye_y + 8 * s, 9 * s, -3 * s, 3.0, skin * 0.65, 0.8)
        eay = (2.6 if t["Narrow_Eyes"] else 4.2) * s
        win, yy, xx = window(ex - 9 * s, ex + 9 * s, eye_y - 5 * s, eye_y + 5 * s)
        _, sclera = ellipse_cover(yy, xx, ex, eye_y, 8.5 * s, eay)
        paint(img, win, sclera, (0.93, 0.92, 0.88))
        _, iris = ellipse_cover(yy, xx, ex + u(-1.5, 1.5), eye_y, 3.8 * s, 3.8 * s)
        paint(img, win, iris * sclera, u(0.05, 0.35, 3))
        lid = 2.5 if t["Heavy_Makeup"] else 1.4
        arc(img, ex, eye_y - eay, 8.5 * s, eay, lid, (0.1, 0.07, 0.06))

    # Nose: a side shadow, the tip and nostrils.
    nose_y = eye_y + 28 * s
    ellipse(img, cx + 4 * s, eye_y + 16 * s, 1.6 * s, 12 * s, skin * 0.8, 0.6)
    ellipse(img, cx, nose_y, (9.5 if t["Big_Nose"] else 7) * s, 5 * s, skin * 0.88, 0.5)
    for side in (-1, 1):
        ellipse(img, cx + side * 4 * s, nose_y + 2 * s, 2.2 * s, 1.4 * s, skin * 0.45, 0.9)
        if not young:  # folds from the nose to the mouth corners
            fold = (cx + side * 9 * s, nose_y + s, cx + side * 17 * s, eye_y + 50 * s)
            line(img, *fold, 2.4, skin * 0.6, 0.85)

    # Mouth: corners curve up when smiling; an open mouth shows its inside (and teeth).
    half = (19 if t["Smiling"] else 15) * s
    curv = u(6, 9) * s if t["Smiling"] else u(-1, 1)
    gap = (u(6, 9) if t["Smiling"] else u(3, 5)) * s if t["Mouth_Slightly_Open"] else 0.0
    lips = skin * np.array([0.82, 0.56, 0.56], np.float32)
    if t["Wearing_Lipstick"]:
        lips = (u(0.6, 0.85), u(0.05, 0.2), u(0.12, 0.3))
    lip_w = (4.0 if t["Big_Lips"] else 2.6) * s
    win, yy, xx = window(cx - half - 1, cx + half + 1, mouth_y - curv - 6 * s, mouth_y + gap + 6)
    bend = 1 - ((xx - cx) / half) ** 2
    upper = mouth_y - curv * (1 - bend)
    lower = upper + gap * np.clip(bend, 0, 1)
    lip = lip_w * (0.35 + 0.65 * np.clip(bend, 0, 1))
    ends = soft(half - np.abs(xx - cx))
    paint(img, win, soft(yy - upper + lip) * soft(lower + lip * 1.2 - yy) * ends, lips)
    if gap:
        inside = soft(yy - upper - 0.8) * ends
        paint(img, win, inside * soft(lower - 0.8 - yy), (0.3, 0.07, 0.07))
        if t["Smiling"]:
            teeth = np.minimum(upper + 4 * s, lower - 1)
            paint(img, win, inside * soft(teeth - yy), (0.93, 0.9, 0.85))
    else:
        paint(img, win, soft(0.7 - np.abs(yy - upper)) * ends, (0.25, 0.08, 0.08))

    if t["Rosy_Cheeks"]:
        for side in (-1, 1):
            ellipse(img, cx + side * 25 * s, eye_y + 24 * s, 9 * s, 6 * s, (0.9, 0.35, 0.4), 0.35)
    if t["Eyeglasses"]:
        frame = u(0.02, 0.2) + u(0, 0.08, 3)
        sun = u() < 0.15
        for side in (-1, 1):
            ex = cx + side * 24 * s
            if sun:
                ellipse(img, ex, eye_y, 13.5 * s, 9.5 * s, (0.05, 0.05, 0.08), 0.85)
            ring(img, ex, eye_y, 14 * s, 10 * s, 4.0, frame)
            temple = (ex + side * 14 * s, eye_y - 3 * s, cx + side * (fax + 1), eye_y - 3 * s)
            line(img, *temple, 3.0, frame)
        arc(img, cx, eye_y - 4.5 * s, 10 * s, 1.5 * s, 3.5, frame)
    if t["Wearing_Hat"]:
        brim_y = top + u(14, 22) * s
        hat = u(0.05, 0.9, 3)
        win, yy, xx = window(cx - fax - 10 * s, cx + fax + 10 * s, top - 40 * s, brim_y)
        _, cover = ellipse_cover(yy, xx, cx, brim_y, fax + 8 * s, brim_y - top + 28 * s)
        paint(img, win, cover * soft(brim_y - yy), hat)
        ellipse(img, cx, brim_y, fax + 22 * s, 5 * s, hat * 0.8)
        arc(img, cx, brim_y - 7 * s, fax + 6 * s, 0, 4.0, u(0.05, 0.9, 3))
    if t["Wearing_Earrings"]:
        metal = (0.92, 0.78, 0.3) if u() < 0.6 else (0.88, 0.88, 0.92)
        for side in (-1, 1):
            ellipse(img, cx + side * (fax + 1), eye_y + 26 * s, 3.2 * s, 3.2 * s, metal)

    # The camera: exposure, colour cast, sensor noise.
    img *= ((u(0.85, 1.1) + u(-0.04, 0.04, 3)) * 255)[:, None, None]
    oy, ox = rng.integers(0, 40, 2)
    img += NOISE[:, oy : oy + HEIGHT, ox : ox + WIDTH]
    img += 0.5
    planes = np.clip(img, 0, 255, out=img).astype(np.uint8)
    picture = Image.merge("RGB", [Image.fromarray(plane) for plane in planes])
    if t["Blurry"]:
        picture = picture.filter(ImageFilter.GaussianBlur(u(1.2, 2.0)))
    return picture


def draw_face(
    seed: int, index: int, label_noise: float, correlate: Correlation | None = None
) -> tuple[Image.Image, np.ndarray]:
    """Face ``index`` (0-based) of the set ``seed`` and its +1/-1 labels (int8, CelebA's order).

    Each face comes from its own generator seeded with ``(seed, index)``, so a set is the same
    whatever the order or parallelism of the drawing. ``correlate`` ties two traits together
    (:func:`~.traits.correlated_traits`); None leaves the face exactly as it always was.
    """
    rng = np.random.default_rng([seed, index])
    traits = sample_traits(rng) if correlate is None else correlated_traits(rng, correlate)
    picture = _draw(rng, traits)
    truth = np.array([traits[name] for name in ATTRIBUTE_NAMES])
    # A stream of its own, so that the pictures do not depend on label_noise.
    flip = (np.random.default_rng([seed, index, 1]).random(truth.size) < label_noise) & VISIBLE
    return picture, np.where(truth ^ flip, 1, -1).astype(np.int8)
