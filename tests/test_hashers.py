"""Hashers: equal to the owning library's output, pinned on a synthetic image, and one contract for all."""

import cv2
import numpy as np
import pytest

from harness.hashers import HASHERS
from harness.params import check_params, param_specs
from tests.conftest import make_synthetic
from transforms import apply_chain

# One example configuration per registered hasher (fast ones: Keras models run with
# random weights at a small input). A new hasher without a row here fails
# test_every_hasher_has_a_case.
CASES = {
    "aHash": {},
    "pHash": {},
    "ResNet50": {"weights": None, "input_size": 64},
}
SLOW = {"ResNet50"}  # building a CNN takes seconds: covered once, here and in test_keras.py


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
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_hash_of_synthetic_image(name):
    assert build(name).hash_batch([make_synthetic()])[0].tobytes().hex() == PINNED[name]
