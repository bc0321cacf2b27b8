"""The hasher registry: YAML name -> class. Entries are lazy import paths, so
listing or validating never imports TensorFlow."""

from harness.registry import Registry

HASHERS = Registry("hasher")
HASHERS.add("aHash", "harness.hashers.opencv:AverageHash")
HASHERS.add("pHash", "harness.hashers.opencv:PHash")
HASHERS.add("ResNet50", "harness.hashers.keras:ResNet50")
