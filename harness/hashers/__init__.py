"""The hasher registry: YAML name -> class. Entries are lazy import paths, so
listing or validating never imports TensorFlow, ImageHash or pdqhash."""

import dataclasses
import inspect

from harness.errors import shortened, shown
from harness.hashers.base import Hasher
from harness.registry import Registry


def _check_plugin(obj, reference: str) -> str | None:
    """Why `obj`, imported for the config's `reference`, is not a hasher, or None. Its `name` must be
    `reference`: hashers.csv records it as the hasher that made the results, and a run.json or a
    leak audit finds the hasher again by it (a string that is not a string is config's to say)."""
    if not (isinstance(obj, type) and issubclass(obj, Hasher)):
        return "must be a subclass of harness.hashers.base.Hasher"
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        return f"does not implement {missing}"
    if not dataclasses.is_dataclass(obj):
        return "must be a @dataclass(frozen=True): its fields are its YAML parameters"
    absent = [a for a in ("name", "description", "distance_kind", "distance_max") if not hasattr(obj, a)]
    if absent:
        return f"lacks the class attribute(s) {', '.join(absent)}"
    if isinstance(obj.name, str) and obj.name != reference:
        return (f"must have name = '{shortened(reference, 120)}' (its import path, as configs name it), "
                f"has {shown(obj.name)}")
    return None


HASHERS = Registry("hasher", check=_check_plugin)
# OpenCV contrib img_hash
HASHERS.add("aHash", "harness.hashers.opencv:AverageHash")
HASHERS.add("pHash", "harness.hashers.opencv:PHash")
HASHERS.add("MarrHildrethHash", "harness.hashers.opencv:MarrHildrethHash")
HASHERS.add("RadialVarianceHash", "harness.hashers.opencv:RadialVarianceHash")
HASHERS.add("BlockMeanHash", "harness.hashers.opencv:BlockMeanHash")
HASHERS.add("ColorMomentHash", "harness.hashers.opencv:ColorMomentHash")
# ImageHash
HASHERS.add("imagehash.average_hash", "harness.hashers.imagehash:AverageHash")
HASHERS.add("imagehash.phash", "harness.hashers.imagehash:PHash")
HASHERS.add("imagehash.dhash", "harness.hashers.imagehash:DHash")
HASHERS.add("imagehash.whash", "harness.hashers.imagehash:WHash")
HASHERS.add("imagehash.colorhash", "harness.hashers.imagehash:ColorHash")
HASHERS.add("imagehash.crop_resistant_hash", "harness.hashers.imagehash:CropResistantHash")
# PDQ
HASHERS.add("PDQ", "harness.hashers.pdq:PDQ")
# Keras CNN embeddings
HASHERS.add("ResNet50", "harness.hashers.keras:ResNet50")
HASHERS.add("MobileNetV3Small", "harness.hashers.keras:MobileNetV3Small")
HASHERS.add("EfficientNetB0", "harness.hashers.keras:EfficientNetB0")
HASHERS.add("keras", "harness.hashers.keras:Keras")
