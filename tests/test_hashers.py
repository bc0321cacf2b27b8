"""Hashers: equal to the owning library's output, pinned on a synthetic image, and one contract for all."""

import cv2
import numpy as np
import pytest

from harness.hashers import HASHERS
from harness.params import check_params, param_specs
from tests.conftest import make_synthetic
from harness.transforms import apply_chain

# One example configuration per registered hasher (fast ones: Keras models run with
# random weights at a small input). A new hasher without a row here fails
# test_every_hasher_has_a_case.
CASES = {
    "aHash": {},
    "pHash": {},
    "MarrHildrethHash": {},
    "RadialVarianceHash": {},
    "BlockMeanHash": {"mode": 1},
    "ColorMomentHash": {},
    "imagehash.average_hash": {},
    "imagehash.phash": {},
    "imagehash.dhash": {},
    "imagehash.whash": {"mode": "db4", "image_scale": 64},
    "imagehash.colorhash": {},
    "imagehash.crop_resistant_hash": {},
    "PDQ": {},
    "ResNet50": {"weights": None, "input_size": 64},
    "MobileNetV3Small": {"weights": None, "input_size": 64},
    "EfficientNetB0": {"weights": None, "input_size": 64},
    "keras": {"model": "MobileNetV3Small", "weights": None, "input_size": 64},
}
# building a CNN takes seconds: covered once, here and in test_keras.py / test_hashers_more.py
SLOW = {"ResNet50", "MobileNetV3Small", "EfficientNetB0", "keras"}
# Not slow, but exempt from the ordering check below like the random CNNs: Hu moments are
# invariant to the 180-degree turn that makes `other`, so it scores closer than `noisy`.
# test_hashers_more.py checks its ordering against a truly different image.
SLOW |= {"ColorMomentHash"}


def build(name):
    cls = HASHERS.get(name)
    hasher = cls(**check_params(param_specs(cls), CASES[name], name))
    hasher.prepare()
    return hasher


def images():
    card = make_synthetic()
    other = np.ascontiguousarray(make_synthetic()[::-1, ::-1, ::-1])  # same statistics, different picture
    noisy = np.clip(card.astype(int) + np.random.default_rng(0).integers(-3, 4, card.shape), 0, 255).astype(np.uint8)
    return card, noisy, other


def test_every_hasher_has_a_case():
    assert set(HASHERS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_contract(name):
    hasher = build(name)
    card, noisy, other = images()
    hashes = hasher.hash_batch([card, noisy, other, card])
    assert len(hashes) == 4
    same = hasher.distance(hashes[[0]], hashes[[3]])
    near = hasher.distance(hashes[[0]], hashes[[1]])
    far = hasher.distance(hashes[[0]], hashes[[2]])
    assert same.shape == (1,) and same.dtype == np.float64
    assert same[0] == pytest.approx(0.0, abs=1e-6)
    if name not in SLOW:  # random CNN weights give no meaningful ordering
        assert near[0] < far[0], "a small change must give a smaller distance than a different image"
    assert 0 <= far[0] <= 2 * hasher.distance_max
    cross = hasher.cross_distance(hashes[:3], hashes)
    rowwise = np.array([[hasher.distance(hashes[[i]], hashes[[j]])[0] for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(cross, rowwise, atol=1e-9)
    assert hasher.hash_batch([]).shape[0] == 0


@pytest.mark.parametrize("name,create", [
    ("aHash", cv2.img_hash.AverageHash_create),
    ("pHash", cv2.img_hash.PHash_create),
    ("MarrHildrethHash", cv2.img_hash.MarrHildrethHash_create),
    ("BlockMeanHash", lambda: cv2.img_hash.BlockMeanHash_create(CASES["BlockMeanHash"]["mode"])),
])
def test_opencv_hashes_equal_img_hash(name, create):
    algorithm = create()
    card, noisy, other = images()
    variants = [card, noisy, other, apply_chain(card, [("blur", {"kernel": 5})])]
    hashes = build(name).hash_batch(variants)
    for image, row in zip(variants, hashes):
        assert np.array_equal(row, algorithm.compute(image)[0])
    for i in range(len(variants)):
        for j in range(len(variants)):
            expected = algorithm.compare(algorithm.compute(variants[i]), algorithm.compute(variants[j]))
            assert build(name).distance(hashes[[i]], hashes[[j]])[0] == expected


# Hashes of tests.conftest.make_synthetic(), pinned: a change of behaviour fails loudly.
PINNED = {
    "aHash": "00048eed878b8dfe",
    "pHash": "77e89d5e8d370b76",
    "MarrHildrethHash": "da42f690bda42f680b85fd3c1d885ed017a4da6924048f802f490b85cd80c0b05e9217b4da42e680b0d8fc7f"
                        "2485ed017a46d92c5f24da42f690b6db63c12485ed217b4e0f8381a4",
    "BlockMeanHash": "0000000000000000000000000000000060000000fc000000ff0100c1ff00c0f0ff0030f87f040efc3f8387fcffe031"
                     "fe3f7c0cff0f9f83ffc3e7e1ff00e07c3e00709f0f00f8e71300fcff0d00fe7f0700ffff0380ffff01c0ffff00e0ff"
                     "7f00f0ff3f00f8ff1f00fcff1f00ffffffffffffffffffffffff01",
    # ImageHash: np.packbits order, so 64-bit hashes read as the library's str(hash)
    "imagehash.average_hash": "00307173e1f1f1ff",
    "imagehash.phash": "ee17397ab14c906a",
    "imagehash.dhash": "2ac5c6e567a363d5",
    "imagehash.whash": "00000000000000000000403fffffffbffe3ff8ffe7fffffff0",  # db4 at 64 px: 14x14 bits
    "imagehash.colorhash": "200000240000",  # 42 bits, zero-padded at the end
    "PDQ": "0b8e778e0fab7cc4152b7edcc4b1ebf0f520112b2b841719ec46d42fec4c6a74",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_hash_of_synthetic_image(name):
    assert build(name).hash_batch([make_synthetic()])[0].tobytes().hex() == PINNED[name]
