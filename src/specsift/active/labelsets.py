"""The label sets a labelling session can use, chosen when the session starts (``--labels``).

A label set says which class names the page offers (and so which class set the active
loop's model learns), which extra fields a label carries, and which part of the spectrum
the model looks at:

* ``emission`` — the LAMOST/Ondřejov emission-line-star set (ABSORPTION, EMISSION,
  DOUBLE_PEAK) on the Hα window of the vgg1d paper;
* ``vi`` — visual inspection of galaxies and quasars as DESI's Prospect does it: a class
  (STAR, GALAXY, QSO), a redshift-quality flag 0–4, the visual-inspection redshift and a
  free-text comment; the model sees the whole spectrum.

Validation lives here so that whatever a page posts is checked against the set before it
reaches the database: only the set's class names, integers 0–4, finite redshifts in range
and a bounded comment are ever stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..classes import labels

__all__ = ["LabelSet", "LABEL_SETS", "get_label_set", "LabelError"]

#: DESI visual-inspection redshift quality: what each value means (Lan et al. 2023).
Z_QUALITY = {4: "confident", 3: "probable", 2: "possible", 1: "unlikely", 0: "no idea"}
MAX_COMMENT = 500
Z_RANGE = (-0.01, 8.0)


class LabelError(ValueError):
    """A posted label that does not fit the session's label set (answered with 400)."""


@dataclass(frozen=True)
class LabelSet:
    name: str
    class_set: str                     # what the active loop's model learns
    window: tuple | None               # vgg1d input window; None = the whole grid
    z_quality: bool = False            # a 0–4 quality flag is required
    z_vi: bool = False                 # a visual-inspection redshift may be given
    comment: bool = False              # a free-text comment may be given
    description: str = ""

    @property
    def classes(self) -> tuple[str, ...]:
        return labels(self.class_set)

    def public(self) -> dict:
        """What the page needs to build its controls."""
        return {"name": self.name, "classes": list(self.classes), "description": self.description,
                "z_quality": ({str(k): v for k, v in Z_QUALITY.items()} if self.z_quality
                              else None),
                "z_vi": self.z_vi, "comment": self.comment, "max_comment": MAX_COMMENT}

    def validate(self, body: dict) -> tuple[str, dict]:
        """(class label, extra fields) from a posted label, or :class:`LabelError`."""
        label = body.get("label")
        if label not in self.classes:
            raise LabelError(f"label must be one of {', '.join(self.classes)}")
        data: dict = {}
        if self.z_quality:
            q = body.get("z_quality")
            if isinstance(q, bool) or not isinstance(q, int) or q not in Z_QUALITY:
                raise LabelError("z_quality must be an integer 0–4")
            data["z_quality"] = q
        if self.z_vi and body.get("z_vi") is not None:
            z = body["z_vi"]
            if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) \
                    or not Z_RANGE[0] <= z <= Z_RANGE[1]:
                raise LabelError(f"z_vi must be a number between {Z_RANGE[0]} and {Z_RANGE[1]}")
            data["z_vi"] = round(float(z), 6)
        if self.comment and body.get("comment"):
            text = body["comment"]
            if not isinstance(text, str) or len(text) > MAX_COMMENT:
                raise LabelError(f"comment must be text of at most {MAX_COMMENT} characters")
            data["comment"] = "".join(ch for ch in text if ch.isprintable() or ch == " ").strip()
        return label, data


LABEL_SETS = {
    "emission": LabelSet("emission", "ondrejov", (6519.0, 140, 1e-4),
                         description="emission-line stars around Hα: absorption, emission, "
                                     "double-peaked emission"),
    "vi": LabelSet("vi", "three", None, z_quality=True, z_vi=True, comment=True,
                   description="visual inspection of galaxies and quasars: class, redshift "
                               "quality 0–4, VI redshift, comment"),
}


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; choose from {', '.join(LABEL_SETS)}") \
            from None
