"""Drawing predictions: class colours, boxes and legends beside (never over) the faces."""

from __future__ import annotations

import cv2
import numpy as np

from .recognizer import FacePrediction

#: Drawing colours (RGB) of the canonical classes; other class names get a colour from :data:`_SPARE`.
CLASS_COLORS = {
    "neutral": (190, 190, 190),
    "happy": (255, 205, 0),
    "sad": (70, 130, 255),
    "surprise": (255, 140, 0),
    "fear": (175, 90, 255),
    "disgust": (60, 185, 75),
    "angry": (235, 45, 45),
    "contempt": (0, 200, 200),
}
_SPARE = ((240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128))


# -- drawing ---------------------------------------------------------------------------------------


def class_color(name: str, classes=()) -> tuple[int, int, int]:
    """The RGB colour of a class in drawings."""
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    extra = [c for c in classes if c not in CLASS_COLORS]
    i = extra.index(name) if name in extra else sum(map(ord, name))
    return _SPARE[i % len(_SPARE)]


def _text_color(rgb) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)


def _place_panel(box, pw: int, ph: int, w: int, h: int, gap: int, placed) -> tuple[int, int]:
    """Top-left corner of a ``pw`` x ``ph`` legend beside ``box``: right, else left, else over the image,
    at the box's top or lower down, avoiding legends already ``placed`` when possible."""
    x1, y1, x2, _ = box
    xs = [x for x in (x2 + gap, x1 - gap - pw) if 0 <= x <= w - pw] or [min(max(x2 + gap, 0), max(w - pw, 0))]
    y0 = min(max(y1, 0), max(h - ph, 0))
    ys = {y0} | {q[3] + gap for q in placed} | {q[1] - gap - ph for q in placed}
    ys = sorted((y for y in ys if 0 <= y <= h - ph), key=lambda y: abs(y - y0))
    for x in xs:
        for y in ys:
            if not any(x < q[2] and q[0] < x + pw and y < q[3] and q[1] < y + ph for q in placed):
                return x, y
    return xs[0], y0


def annotate(
    image, faces: list[FacePrediction], tracks: list[int] | None = None, min_side: int = 480
) -> np.ndarray:
    """A copy of ``image`` with, per face, its box, its label and a bar chart of every class probability.

    The chart is a legend box listing the classes with a horizontal bar and the percentage each; the
    predicted class is highlighted. With one face it stands beside the face (right of it when there is room,
    else left) as long as it stays clear of the face; otherwise, and always with several faces, the legends
    go into a column added to the right of the picture, each numbered like its face's tag (``1 happy 91%``),
    so no legend ever covers a face or another legend. Line widths and text scale with the image, and images
    whose longer side is below ``min_side`` pixels are enlarged first so small crops stay readable (boxes are
    scaled along).

    Args:
        image: uint8 RGB ``[H, W, 3]`` or grayscale ``[H, W]`` array (or a path / PIL image).
        faces: the faces, e.g. from :meth:`ferlab.Recognizer.predict`.
        tracks: optional track id per face, shown as ``#id``.
        min_side: enlarge smaller images to this longer side (0 never enlarges).

    Returns:
        uint8 RGB ``[H', W', 3]``.
    """
    from ..io import as_array

    img = as_array(image, grayscale=False).copy()
    h, w = img.shape[:2]
    factor = 1.0
    if min_side and max(h, w) < min_side:
        factor = min_side / max(h, w)
        img = cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
    s = min(max(max(h, w) / 600, 0.7), 4.0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs, th = 0.5 * s, max(1, round(1.2 * s))
    line = max(2, round(2 * s))
    pad = max(3, round(5 * s))
    text_h = cv2.getTextSize("Ag", font, fs, th)[0][1]
    base0 = cv2.getTextSize("Ag", font, fs, th)[1]
    gap = max(4, round(6 * s))
    boxes = [tuple(round(v * factor) for v in f.box) for f in faces]
    side_column = False
    if faces:  # legend size (the same for every face of one model)
        classes0 = list(faces[0].probs)
        name_w0 = max(cv2.getTextSize(c, font, fs, th)[0][0] for c in classes0)
        pw0 = name_w0 + round(110 * s) + cv2.getTextSize("100%", font, fs, th)[0][0] + 4 * pad
        ph0 = (text_h + base0 + pad) * len(classes0) + pad + text_h + base0 + pad
        if len(faces) > 1:
            side_column = True
        else:
            px, py = _place_panel(boxes[0], pw0, ph0, w, h, gap, [])
            x1, y1, x2, y2 = boxes[0]
            side_column = px < x2 and x1 < px + pw0 and py < y2 and y1 < py + ph0  # it would cover the face
        if side_column:
            # a wide, low picture: legends in rows under it; else in columns beside it
            below = ph0 + 2 * gap > h
            if below:
                per_row = max(1, (w - gap) // (pw0 + gap))
                nrow = -(-len(faces) // per_row)
                canvas = np.full((h + nrow * (ph0 + gap) + gap, max(w, pw0 + 2 * gap), 3), 30, np.uint8)
            else:
                per_col = max(1, (h - gap) // (ph0 + gap))
                ncol = -(-len(faces) // per_col)
                canvas = np.full((h, w + ncol * (pw0 + gap) + gap, 3), 30, np.uint8)
            canvas[:h, :w] = img
            img = canvas
    placed: list[tuple[int, int, int, int]] = []  # legend boxes drawn so far
    for k, f in enumerate(faces):
        x1, y1, x2, y2 = boxes[k]
        classes = list(f.probs)
        color = class_color(f.label, classes)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        # title tag above the box (inside it when the box touches the top)
        tag = f"{f.label} {100 * f.confidence:.0f}%"
        if tracks is not None:
            tag = f"#{tracks[k]} {tag}"
        if side_column:
            tag = f"{k + 1} {tag}"
        (tw, _), base = cv2.getTextSize(tag, font, fs, th)
        tag_h = text_h + base + 2 * pad
        ty = y1 - tag_h if y1 - tag_h >= 0 else y1
        tx = min(max(x1, 0), max(w - tw - 2 * pad, 0))
        cv2.rectangle(img, (tx, ty), (tx + tw + 2 * pad, ty + tag_h), color, -1)
        cv2.putText(img, tag, (tx + pad, ty + pad + text_h), font, fs, _text_color(color), th, cv2.LINE_AA)
        # legend: one row per class, name | bar | percent
        name_w = max(cv2.getTextSize(c, font, fs, th)[0][0] for c in classes)
        pct_w = cv2.getTextSize("100%", font, fs, th)[0][0]
        bar_w = round(110 * s)
        row = text_h + base + pad
        pw = name_w + bar_w + pct_w + 4 * pad
        ph = row * len(classes) + pad
        head = 0
        if side_column:
            head = row
            ph += head
            if below:
                per_row = max(1, (w - gap) // (pw + gap))
                px = gap + (k % per_row) * (pw + gap)
                py = h + gap + (k // per_row) * (ph + gap)
            else:
                per_col = max(1, (h - gap) // (ph + gap))
                px = w + gap + (k // per_col) * (pw + gap)
                py = gap + (k % per_col) * (ph + gap)
        else:
            px, py = _place_panel((x1, y1, x2, y2), pw, ph, w, h, gap, placed)
        placed.append((px, py, px + pw, py + ph))
        px2, py2 = min(px + pw, img.shape[1]), min(py + ph, img.shape[0])
        roi = img[py:py2, px:px2]
        roi[:] = (roi.astype(np.float32) * 0.3 + np.array([20, 20, 20]) * 0.7).astype(np.uint8)
        cv2.rectangle(img, (px, py), (px2 - 1, py2 - 1), color, max(1, line // 2))
        if head:
            cv2.putText(img, tag, (px + pad, py + pad + text_h), font, fs, (255, 255, 255), th, cv2.LINE_AA)
        for r, c in enumerate(classes):
            top = py + pad + head + r * row
            y_text = top + text_h
            best = c == f.label
            ink = (255, 255, 255) if best else (185, 185, 185)
            if best:  # frame the predicted class's row
                cv2.rectangle(img, (px + 1, top - pad // 2), (px2 - 2, top + row - pad // 2), color, 1)
            cv2.putText(img, c, (px + pad, y_text), font, fs, ink, th, cv2.LINE_AA)
            bx = px + 2 * pad + name_w
            fill = round(bar_w * min(max(f.probs[c], 0.0), 1.0))
            cc = class_color(c, classes)
            cv2.rectangle(img, (bx, top), (bx + bar_w, top + text_h), (70, 70, 70), -1)
            if fill > 0:
                cv2.rectangle(img, (bx, top), (bx + fill, top + text_h), cc, -1)
            cv2.putText(
                img,
                f"{100 * f.probs[c]:.0f}%",
                (bx + bar_w + pad, y_text),
                font,
                fs,
                ink,
                th,
                cv2.LINE_AA,
            )
    return img
