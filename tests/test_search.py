"""The exact search of harness.search against brute force: every pair within the threshold
and none more, the exact histogram of distances, for every hash width of this project,
with both engines (faiss and numpy), and the groups the pairs join."""

import numpy as np
import pytest

from harness import search
from harness.hashers.base import hamming, hamming_cross
from harness.hashers.keras import ResNet50
from harness.hashers.opencv import AverageHash, ColorMomentHash, RadialVarianceHash
from harness.hashers.pdq import PDQ

# Bit widths of this project's hashers, and the smallest: one byte (8), colorhash's
# 14 * 3 = 42 (in 6 bytes), aHash and pHash 64, ImageHash's hash_size 14 = 196 (in 25
# bytes), PDQ and BlockMeanHash 256, MarrHildrethHash 576, BlockMeanHash mode 1's 961
# (in 121 bytes).
WIDTHS = [8, 42, 64, 196, 256, 576, 961]
ENGINES = ["faiss", "numpy"]


def random_hashes(rng, count: int, nbits: int) -> np.ndarray:
    """Random bit-packed hashes with the padding bits zero, as np.packbits leaves them."""
    return np.packbits(rng.integers(0, 2, (count, nbits), dtype=np.uint8), axis=1)


def flip_bits(rng, hashes: np.ndarray, nbits: int, most: int) -> np.ndarray:
    """Each hash with 0..most of its nbits bits flipped (never a padding bit), the first
    with exactly `most`."""
    bits = np.unpackbits(hashes, axis=1, count=nbits)
    counts = rng.integers(0, most + 1, len(bits))
    counts[0] = most
    for row, count in zip(bits, counts):
        row[rng.choice(nbits, size=int(count), replace=False)] ^= 1
    return np.packbits(bits, axis=1)


def hash_sets(nbits: int, seed: int = 0):
    """Queries, and a database holding near-copies (a few bits flipped), an exact copy
    and unrelated hashes, so that small thresholds find pairs and ties occur."""
    rng = np.random.default_rng(seed)
    queries = random_hashes(rng, 70, nbits)
    near = flip_bits(rng, queries[:40], nbits, most=max(1, nbits // 16))
    database = np.concatenate([near, queries[40:42], random_hashes(rng, 50, nbits)])
    return queries, database[rng.permutation(len(database))]


def brute_pairs(distances: np.ndarray, threshold: float, within: bool = False):
    keep = distances <= threshold
    if within:
        keep &= np.triu(np.ones(distances.shape, dtype=bool), k=1)
    i, j = np.nonzero(keep)
    return i, j, distances[i, j]


def assert_pairs(pairs: search.Pairs, expected) -> None:
    i, j, distance = expected
    assert pairs.i.dtype == np.int64 and pairs.j.dtype == np.int64 and pairs.distance.dtype == np.float64
    np.testing.assert_array_equal(pairs.i, i)
    np.testing.assert_array_equal(pairs.j, j)
    np.testing.assert_array_equal(pairs.distance, distance)


def thresholds(nbits: int):
    """0, a small one, a middling one (near the distance of unrelated hashes, where most
    pairs are ties or close to one) and the maximum."""
    return [0, max(1, nbits // 16), nbits // 2, nbits]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nbits", WIDTHS)
def test_cross_set_pairs_are_exactly_brute_forces(nbits, engine):
    queries, database = hash_sets(nbits)
    distances = hamming_cross(queries, database)
    for threshold in thresholds(nbits):
        pairs = search.hamming_pairs(queries, database, threshold, engine=engine)
        assert_pairs(pairs, brute_pairs(distances, threshold))
    # The data have pairs at 0 and ties at the small threshold, and the maximum takes all.
    assert (distances == 0).any() and (distances == thresholds(nbits)[1]).any()
    assert len(search.hamming_pairs(queries, database, nbits, engine=engine)) == distances.size


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nbits", WIDTHS)
def test_within_set_pairs_are_i_below_j_and_exactly_brute_forces(nbits, engine):
    queries, database = hash_sets(nbits)
    hashes = np.concatenate([queries, database])
    distances = hamming_cross(hashes, hashes)
    for threshold in thresholds(nbits):
        pairs = search.hamming_pairs_within(hashes, threshold, engine=engine)
        assert_pairs(pairs, brute_pairs(distances, threshold, within=True))
        assert (pairs.i < pairs.j).all()
    count = len(hashes)
    assert len(search.hamming_pairs_within(hashes, nbits, engine=engine)) == count * (count - 1) // 2


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tie_at_the_threshold_is_in_and_a_fractional_threshold_rounds_down(engine):
    queries = np.array([[0b0000_0000], [0b1111_0000]], dtype=np.uint8)
    database = np.array([[0b0000_0111], [0b0000_1111], [0b0000_0000]], dtype=np.uint8)
    pairs = search.hamming_pairs(queries, database, 3, engine=engine)
    assert list(zip(pairs.i, pairs.j, pairs.distance)) == [(0, 0, 3.0), (0, 2, 0.0)]
    below = search.hamming_pairs(queries, database, 2.99, engine=engine)
    assert list(zip(below.i, below.j)) == [(0, 2)]
    assert_pairs(search.hamming_pairs(queries, database, 4.5, engine=engine),
                 brute_pairs(hamming_cross(queries, database), 4))


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_sets_and_one_element(engine):
    none = np.zeros((0, 8), dtype=np.uint8)
    one = np.full((1, 8), 7, dtype=np.uint8)
    for queries, database in [(none, one), (one, none), (none, none)]:
        assert len(search.hamming_pairs(queries, database, 64, engine=engine)) == 0
    assert len(search.hamming_pairs_within(none, 64, engine=engine)) == 0
    assert len(search.hamming_pairs_within(one, 64, engine=engine)) == 0
    assert_pairs(search.hamming_pairs(one, one, 0, engine=engine), ([0], [0], [0.0]))
    assert search.hamming_histogram(none, one).tolist() == [0] * 65
    assert search.hamming_histogram_within(one, nbits=60).tolist() == [0] * 61
    assert search.hamming_histogram(one, one).tolist() == [1] + [0] * 64


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("nbits", WIDTHS)
def test_the_histograms_equal_brute_forces_bincount(nbits, engine):
    queries, database = hash_sets(nbits, seed=1)
    cross = hamming_cross(queries, database).astype(np.int64)
    histogram = search.hamming_histogram(queries, database, nbits, engine=engine)
    np.testing.assert_array_equal(histogram, np.bincount(cross.ravel(), minlength=nbits + 1))
    assert len(histogram) == nbits + 1 and histogram.sum() == cross.size
    hashes = np.concatenate([queries, database])
    within = hamming_cross(hashes, hashes).astype(np.int64)[np.triu_indices(len(hashes), k=1)]
    np.testing.assert_array_equal(search.hamming_histogram_within(hashes, nbits, engine=engine),
                                  np.bincount(within, minlength=nbits + 1))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_histogram_counts_the_extremes_and_every_batch(monkeypatch, engine):
    # A hash and its complement are nbits apart (the last bin); small batches make the
    # counter flush many times, with an odd number of distances left over.
    monkeypatch.setattr(search, "HISTOGRAM_BATCH", 99)
    monkeypatch.setattr(search, "TILE_PAIRS", 64)
    rng = np.random.default_rng(2)
    for nbits in (64, 256):
        hashes = random_hashes(rng, 37, nbits)
        hashes = np.concatenate([hashes, ~hashes[:5], hashes[:3]])
        # 21 x 45: the last tiles hold an odd number of pairs (5 x 5).
        cross = hamming_cross(hashes[:21], hashes).astype(np.int64)
        histogram = search.hamming_histogram(hashes[:21], hashes, engine=engine)
        np.testing.assert_array_equal(histogram, np.bincount(cross.ravel(), minlength=nbits + 1))
        assert histogram[nbits] > 0 and histogram[0] > 0
        within = hamming_cross(hashes, hashes).astype(np.int64)[np.triu_indices(len(hashes), k=1)]
        for workers in (1, 3):
            np.testing.assert_array_equal(search.hamming_histogram_within(hashes, engine=engine, workers=workers),
                                          np.bincount(within, minlength=nbits + 1))


def test_the_histogram_refuses_set_padding_bits():
    hashes = np.zeros((3, 6), dtype=np.uint8)
    hashes[0] = 0xFF  # 48 bits set, 6 of them padding of a 42-bit hash
    assert search.hamming_histogram(hashes, hashes)[48] == 4
    with pytest.raises(ValueError, match="exceeds nbits=42"):
        search.hamming_histogram_within(hashes, nbits=42)
    with pytest.raises(ValueError, match="nbits"):
        search.hamming_histogram(hashes, hashes, nbits=40)


@pytest.mark.parametrize("within", [False, True])
def test_faiss_and_numpy_agree_across_blocks_tiles_and_threads(monkeypatch, within):
    # Small blocks and tiles so that many of them, and their edges, are crossed.
    monkeypatch.setattr(search, "FAISS_QUERY_BLOCK", 97)
    monkeypatch.setattr(search, "TILE_PAIRS", 500)
    rng = np.random.default_rng(3)
    database = random_hashes(rng, 600, 64)
    queries = np.concatenate([flip_bits(rng, database[::3], 64, most=12), random_hashes(rng, 150, 64)])
    found = []
    for engine, workers in [("faiss", None), ("numpy", 1), ("numpy", 2), ("numpy", 5)]:
        if within:
            found.append(search.hamming_pairs_within(queries, 22, engine=engine, workers=workers))
        else:
            found.append(search.hamming_pairs(queries, database, 22, engine=engine, workers=workers))
    expected = brute_pairs(hamming_cross(queries, queries if within else database), 22, within)
    assert len(expected[0]) > 200
    for pairs in found:
        assert_pairs(pairs, expected)


def embeddings(seed: int = 4, dims: int = 48):
    """Non-negative float32 vectors (pooled ReLU features), near-copies with noise, and a zero row."""
    rng = np.random.default_rng(seed)
    queries = rng.random((60, dims), dtype=np.float32) ** 3
    near = queries[:30] * rng.uniform(0.5, 2.0, (30, 1)) + rng.normal(0, 0.02, (30, dims))
    database = np.concatenate([near, rng.random((40, dims)) ** 3, np.zeros((1, dims))]).astype(np.float32)
    return queries, database


def all_pairs_distance(hasher, a, b) -> np.ndarray:
    """The hasher's own row-wise distance for every pair: the reference the search must equal."""
    i, j = np.divmod(np.arange(len(a) * len(b)), len(b))
    return hasher.distance(a[i], b[j]).reshape(len(a), len(b))


@pytest.mark.parametrize("hasher, sets", [
    (ResNet50(weights=None), embeddings()),
    (ColorMomentHash(), tuple(np.random.default_rng(5).normal(0, 2e-3, (2, 50, 42)))),
    (RadialVarianceHash(), tuple(np.random.default_rng(6).integers(0, 256, (2, 50, 40), dtype=np.uint8))),
])
def test_hasher_pairs_equal_brute_force_with_the_hashers_own_distance(hasher, sets):
    queries, database = sets
    cross = all_pairs_distance(hasher, queries, database)
    hashes = np.concatenate([queries, database])
    within = all_pairs_distance(hasher, hashes, hashes)
    finite = np.sort(cross[np.isfinite(cross)].ravel())
    # Thresholds at an actual distance (a tie, which must be in), between distances, and above all.
    for threshold in [0.0, finite[5], finite[len(finite) // 3], (finite[20] + finite[21]) / 2, finite[-1] + 1]:
        assert_pairs(search.hasher_pairs(hasher, queries, database, threshold), brute_pairs(cross, threshold))
        assert_pairs(search.hasher_pairs_within(hasher, hashes, threshold),
                     brute_pairs(within, threshold, within=True))


def flat_sets(hasher):
    """Two sets of hashes that hold hashes with no direction or variance (zero embeddings, RadialVariance
    hashes of equal bytes: a black image's), some identical across the sets, among ordinary ones."""
    rng = np.random.default_rng(11)
    if isinstance(hasher, ResNet50):
        queries, database = embeddings(seed=12)
        zero = np.zeros((1, queries.shape[1]), np.float32)
        return np.concatenate([zero, queries, zero]), np.concatenate([database, zero])
    queries, database = rng.integers(0, 256, (2, 20, 40), dtype=np.uint8)
    flat = np.repeat(np.array([[0], [0], [7]], np.uint8), 40, axis=1)
    return np.concatenate([flat[:2], queries, flat[2:]]), np.concatenate([database, flat[1:]])


@pytest.mark.parametrize("hasher", [ResNet50(weights=None), RadialVarianceHash()])
def test_identical_hashes_without_variance_are_found_at_threshold_0(hasher):
    """A zero embedding, or a RadialVariance hash of equal bytes, is at distance 0 from an identical one
    (a black image given to two splits is a copy), though cosine and correlation are undefined there;
    the search finds those pairs as the hasher's own distance does."""
    queries, database = flat_sets(hasher)
    cross = all_pairs_distance(hasher, queries, database)
    identical = (queries[:, None, :] == database[None, :, :]).all(axis=-1)
    assert identical.sum() >= 2 and (cross[identical] == 0).all()
    hashes = np.concatenate([queries, database])
    within = all_pairs_distance(hasher, hashes, hashes)
    assert (np.diag(within) == 0).all()
    block = hasher.cross_distance(queries, database)  # the same formula in another order: a few ulp apart
    assert (block[identical] == 0).all()
    np.testing.assert_allclose(block, cross, rtol=1e-12, atol=1e-12)
    for threshold in [0.0, 0.5]:
        assert_pairs(search.hasher_pairs(hasher, queries, database, threshold), brute_pairs(cross, threshold))
        assert_pairs(search.hasher_pairs_within(hasher, hashes, threshold), brute_pairs(within, threshold, within=True))


def test_every_embedding_pair_is_found_at_a_threshold_equal_to_its_own_distance():
    # The float32 products that find candidates round differently from the hasher's
    # float64 distance: without a margin, about half of these ties would be missed.
    hasher = ResNet50(weights=None)
    queries, database = embeddings(seed=8, dims=1024)
    cross = all_pairs_distance(hasher, queries, database)
    rng = np.random.default_rng(9)
    for i, j in zip(rng.integers(0, len(queries), 40), rng.integers(0, len(database) - 1, 40)):
        pairs = search.hasher_pairs(hasher, queries, database, cross[i, j])
        at = np.flatnonzero((pairs.i == i) & (pairs.j == j))
        assert len(at) == 1 and pairs.distance[at[0]] == cross[i, j]
        assert_pairs(pairs, brute_pairs(cross, cross[i, j]))


def test_a_zero_embedding_is_64_from_everything_as_the_hasher_says():
    hasher = ResNet50(weights=None)
    queries, database = embeddings()
    pairs = search.hasher_pairs(hasher, queries, database, 64.0)
    zero = pairs.j == len(database) - 1
    assert zero.sum() == len(queries) and (pairs.distance[zero] == 64.0).all()


@pytest.mark.parametrize("hasher, nbits", [(AverageHash(), 64), (PDQ(), 256)])
def test_bit_hashers_go_to_the_hamming_search(hasher, nbits):
    queries, database = hash_sets(nbits, seed=7)
    threshold = nbits // 8
    pairs = search.hasher_pairs(hasher, queries, database, threshold)
    assert_pairs(pairs, brute_pairs(hasher.cross_distance(queries, database), threshold))
    np.testing.assert_array_equal(pairs.distance, hamming(queries[pairs.i], database[pairs.j]))
    hashes = np.concatenate([queries, database])
    assert_pairs(search.hasher_pairs_within(hasher, hashes, threshold),
                 brute_pairs(hasher.cross_distance(hashes, hashes), threshold, within=True))


def test_duplicate_groups_are_components_numbered_by_their_smallest_member():
    i = np.array([7, 2, 5, 9, 4])
    j = np.array([3, 5, 8, 9, 2])
    groups = search.duplicate_groups(11, i, j)
    # Components {2, 4, 5, 8} (smallest 2) and {3, 7} (smallest 3); 9 pairs only with itself.
    assert groups.tolist() == [-1, -1, 0, 1, 0, 0, -1, 1, 0, -1, -1]
    order = np.random.default_rng(0).permutation(len(i))
    np.testing.assert_array_equal(search.duplicate_groups(11, j[order], i[order]), groups)
    assert search.duplicate_groups(3, [], []).tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="0..10"):
        search.duplicate_groups(11, [0], [11])


def test_bad_input_is_a_value_error_naming_it():
    hashes = np.zeros((2, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="queries: expected bit-packed uint8"):
        search.hamming_pairs(hashes.astype(np.int64), hashes, 3)
    with pytest.raises(ValueError, match="8 bytes a hash, the database 4"):
        search.hamming_pairs(hashes, hashes[:, :4], 3)
    for threshold in (-1, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="threshold"):
            search.hamming_pairs_within(hashes, threshold)
    with pytest.raises(ValueError, match="engine"):
        search.hamming_pairs(hashes, hashes, 3, engine="annoy")
    with pytest.raises(ValueError, match="workers"):
        search.hamming_histogram(hashes, hashes, workers=0)
    for limit in ("10", -5, 2.5, True):
        for call in (lambda: search.hamming_pairs_within(hashes, 0, limit=limit),
                     lambda: search.hasher_pairs(AverageHash(), hashes, hashes, 0, limit=limit)):
            with pytest.raises(ValueError, match=r"^limit: expected None or a whole number of pairs >= 0, got "):
                call()
    assert len(search.hamming_pairs_within(hashes, 0, limit=np.int64(1))) == 1


@pytest.mark.parametrize("engine", ["faiss", "numpy"])
@pytest.mark.parametrize("within", [False, True])
def test_a_limit_stops_the_search_soon_after_it_and_changes_nothing_below_it(monkeypatch, engine, within):
    # Small faiss blocks: the short first calls, doubling, cross the database blocks' edges.
    monkeypatch.setattr(search, "FAISS_QUERY_BLOCK", 997)
    same = np.full((3000, 8), 0x5A, np.uint8)  # every pair within 0: 4.5 million (9 across)
    with pytest.raises(search.TooManyPairs) as over:
        if within:
            search.hamming_pairs_within(same, 0, engine=engine, workers=2, limit=100_000)
        else:
            search.hamming_pairs(same, same, 0, engine=engine, workers=2, limit=100_000)
    assert 100_000 < over.value.count <= 300_000  # the limit, and at most one block's or two tiles' more
    # Below the limit, the same pairs as without one (faiss's short first blocks included).
    rng = np.random.default_rng(5)
    database = random_hashes(rng, 20_000, 64)
    queries = np.concatenate([flip_bits(rng, database[::7], 64, most=6), random_hashes(rng, 2_000, 64)])
    if within:
        queries = np.concatenate([database, queries])
        expected = search.hamming_pairs_within(queries, 6, engine=engine, workers=2)
        found = search.hamming_pairs_within(queries, 6, engine=engine, workers=2, limit=len(expected))
    else:
        expected = search.hamming_pairs(queries, database, 6, engine=engine, workers=2)
        found = search.hamming_pairs(queries, database, 6, engine=engine, workers=2, limit=len(expected))
    assert len(expected) > 2000
    assert_pairs(found, (expected.i, expected.j, expected.distance))
