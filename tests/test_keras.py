"""The Keras path: real architecture with random weights (no network here), batching, weights errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

from harness.errors import UnavailableError
from harness.hashers.keras import ResNet50
from tests.conftest import make_synthetic
from harness.transforms import apply_chain


@pytest.fixture(scope="module")
def resnet():
    hasher = ResNet50(weights=None, input_size=64, batch_size=4)
    hasher.prepare()
    return hasher


def variants():
    card = make_synthetic()
    return [card] + [apply_chain(card, [(name, params)]) for name, params in [
        ("blur", {"kernel": 5}), ("jpeg", {"quality": 30}), ("gamma", {"gamma": 1.5}),
        ("grayscale", {}), ("scale", {"factor": 0.5, "interpolation": "linear"})]]


def test_batched_embeddings_equal_one_by_one(resnet):
    images = variants()  # 6 images, batch_size 4: one full and one partial batch
    batched = resnet.hash_batch(images)
    single = np.concatenate([resnet.hash_batch([image]) for image in images])
    assert batched.shape == (6, 2048) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_a_batch_of_32_at_224_px_stays_within_3_gib():
    """The configs' ResNet50 at its batch of 32: called eagerly, the model held every layer's
    output at once (a peak of about 5.6 GiB here); through a graph it peaked at about 1.3 GiB.
    In a process of its own, so that the peak is this batch's alone."""
    code = ("import numpy as np\nfrom harness.hashers.keras import ResNet50\n"
            "rng = np.random.default_rng(0)\n"
            "images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(32)]\n"
            "assert ResNet50(weights=None).hash_batch(images).shape == (32, 2048)\n"
            # VmHWM, the peak of the process's own memory: ru_maxrss would also count the size of
            # this test's process when it started the child, which the kernel carries over
            "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "AutoGraph" not in done.stderr, done.stderr  # the function's own warning, once printed on every run
    peak_mib = int(done.stdout.split()[-1]) / 1024
    assert peak_mib < 3 * 1024, f"peak {peak_mib:.0f} MiB"


def test_article_distance_scale(resnet):
    hashes = resnet.hash_batch(variants())
    assert resnet.distance(hashes[:1], hashes[:1])[0] == pytest.approx(0.0, abs=1e-4)
    a, b = hashes[0].astype(np.float64), hashes[1].astype(np.float64)
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert resnet.distance(hashes[[0]], hashes[[1]])[0] == pytest.approx(64 * (1 - cosine), rel=1e-6)


def test_channel_order_is_applied():
    bgr = ResNet50(weights=None, input_size=64, channel_order="bgr")
    rgb = ResNet50(weights=None, input_size=64, channel_order="rgb")
    image = make_synthetic()
    assert not np.allclose(bgr.hash_batch([image]), rgb.hash_batch([image]))
    np.testing.assert_allclose(bgr.hash_batch([image]), rgb.hash_batch([np.ascontiguousarray(image[..., ::-1])]),
                               rtol=1e-4, atol=1e-5)


FETCH_FAILURE = ("URL fetch failure on https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5: None -- [Errno -2] Name or service not known")


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """What Keras raises here when the weights are neither cached nor downloadable."""
    import keras

    def constructor(**kwargs):
        assert kwargs["weights"] == "imagenet" and kwargs["include_top"] is False
        raise Exception(FETCH_FAILURE)

    monkeypatch.setattr(keras.applications, "ResNet50", constructor)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def test_missing_imagenet_weights_say_which_file_goes_where(no_download):
    with pytest.raises(UnavailableError) as caught:
        ResNet50().prepare()
    message = str(caught.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert f"{no_download / 'keras' / 'models'}/" in message
    assert "`weights:`" in message and "\n" not in message


def test_run_marks_an_unavailable_cnn_and_prints_the_fix_last(no_download, synthetic_file, capsys):
    from harness.__main__ import main

    config = no_download / "c.yaml"
    config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, ResNet50]\n"
                      "sweeps:\n  - family: blur\n    b: {blur: {kernel: $value}}\n    values: [3, 5]\n")
    out = no_download / "out"
    assert main(["run", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("note: hasher ResNet50 unavailable: ImageNet weights for ResNet50 unavailable")
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in last
    table = (out / "table.csv").read_text().splitlines()
    assert table[0] == "family,value,label,aHash,ResNet50"
    assert all(line.endswith(",unavailable") for line in table[1:])
    summary = (out / "summary.md").read_text()
    assert "ResNet50 unavailable" in summary and "resnet50\\_weights\\_tf\\_dim\\_ordering" in summary
    assert ",unavailable," in (out / "hashers.csv").read_text()


def test_strict_stops_before_any_work(no_download, synthetic_file, capsys):
    from harness.__main__ import main

    config = no_download / "c.yaml"
    config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, ResNet50]\n"
                      "sweeps:\n  - family: blur\n    b: {blur: {kernel: $value}}\n    values: [3, 5]\n")
    out = no_download / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--strict"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {config}: hashers[1] (ResNet50): ImageNet weights")
    assert "leave out --strict" in error[0]
    assert not (out / "distances.csv").exists()


def test_a_stop_for_an_unavailable_hasher_gives_the_advice_of_the_caller(no_download, synthetic_file, capsys):
    """The command line's run says --strict (above); the API names its own argument, and a leak
    audit, which has no --strict and needs every hasher it names, offers no way round."""
    import harness
    from harness.__main__ import main

    config = {"images": [synthetic_file], "hashers": ["aHash", "ResNet50"],
              "sweeps": [{"family": "blur", "b": {"blur": {"kernel": "$value"}}, "values": [3]}]}
    with pytest.raises(UnavailableError) as caught:
        harness.evaluate(config, strict=True)
    assert str(caught.value).startswith("<dict>: hashers[1] (ResNet50): ImageNet weights")
    assert str(caught.value).endswith("; or pass strict=False to run the other hashers")
    assert main(["leaks", "--train", synthetic_file, "--test", synthetic_file, "--hashers", "ResNet50",
                 "--threshold", "5", "--out", str(no_download / "leaks"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: the command line: hashers[0] (ResNet50): ImageNet weights")
    assert "strict" not in error[0] and error[0].endswith("`weights:` to the path of that file")


@pytest.mark.parametrize("model, side", [
    ("VGG16", 32), ("Xception", 75), ("InceptionV3", 75), ("DenseNet121", 32), ("ResNet50V2", 32),
    ("ConvNeXtTiny", 32), ("EfficientNetV2B0", 32), ("MobileNetV3Large", 32),
    ("MobileNet", 128), ("MobileNet", 100), ("MobileNetV2", 96), ("MobileNetV2", 100)])
def test_weights_file_is_the_name_keras_caches_the_weights_under(model, side, monkeypatch):
    """harness.hashers.keras.weights_file (a static table, read before TensorFlow is imported) gives
    the name Keras' own code passes to keras.utils.get_file, one model of each naming scheme, and the
    MobileNets' sizes with and without weights of their own."""
    import keras
    from keras.src.utils import file_utils

    from harness.hashers.keras import import_keras, weights_file

    class Asked(Exception):
        pass

    def get_file(fname, *args, **kwargs):  # the file Keras asks for, instead of downloading it
        raise Asked(fname)

    import_keras()
    monkeypatch.setattr(file_utils, "get_file", get_file)
    with pytest.raises(Asked) as asked:
        getattr(keras.applications, model)(include_top=False, weights="imagenet", input_shape=(side, side, 3))
    assert weights_file(model, side) == str(asked.value)


def test_without_tensorflow_a_cnn_says_how_to_install_it(monkeypatch):
    from harness.errors import UnavailableError
    from harness.hashers import HASHERS

    for name in ("keras", "tensorflow"):  # as if not installed: importing them raises ImportError
        monkeypatch.setitem(sys.modules, name, None)
    for weights in (None, "imagenet"):  # ImageNet weights: said before where the weights go, which needs it first
        with pytest.raises(UnavailableError) as caught:
            HASHERS.get("ResNet50")(weights=weights).prepare()
        message = str(caught.value)
        assert "pip install" in message and "[cnn]" in message and "\n" not in message, weights


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom harness.__main__ import main\n"
            "for argv in (['--help'], ['run', '--help'], ['report', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "import harness.config, harness.hashers, harness.runner, harness.report\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_importing_keras_leaves_the_sessions_environment_as_it_was():
    """TensorFlow's start-up logging is quietened through TF_CPP_MIN_LOG_LEVEL; a session that had
    not set it must not find it set afterwards (its later subprocesses would log nothing)."""
    code = ("import os\nfrom harness.hashers.keras import import_keras\n"
            "os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)\nimport_keras()\n"
            "print(repr(os.environ.get('TF_CPP_MIN_LOG_LEVEL')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def _legacy_weights(path, seed: int) -> None:
    """ResNet50 weights (random, seeded) in the layout of Keras' ImageNet files: an HDF5 file of layer
    groups, as the downloaded `..._notop.h5` is."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg", input_shape=(64, 64, 3))
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


def test_imagenet_weights_in_keras_cache_are_loaded_by_path_kept_and_keyed_by_content(tmp_path, monkeypatch):
    """A file in Keras' cache under the ImageNet weights' name is loaded as it is: Keras' own path
    checks its MD5 and, with no network to download it again, deleted a file put there by hand (and a
    read-only cache folder sent it to /tmp/.keras instead). The hash cache's key and the run's record
    follow the file's content, as for a `weights:` path."""
    from harness.hashers.keras import cached_imagenet_file
    from harness.imagework import plan_files
    from harness.config import HasherSpec
    from harness.runner import hasher_key

    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    cached = models / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _legacy_weights(cached, seed=5)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert cached_imagenet_file("ResNet50", 64) == str(cached)
    images = variants()[:3]
    imagenet = ResNet50(weights="imagenet", input_size=64)
    from_path = ResNet50(weights=str(cached), input_size=64)
    np.testing.assert_array_equal(imagenet.hash_batch(images), from_path.hash_batch(images))
    assert cached.is_file()  # still there, unchanged
    key = hasher_key(imagenet, {})
    files = plan_files((HasherSpec("ResNet50", "ResNet50", (("weights", "imagenet"), ("input_size", 64))),), ())
    assert [(name, path) for name, path, *_ in files] == [("weights of hasher ResNet50", str(cached))]
    from harness import evaluate
    from harness.provenance import file_sha256

    results = evaluate({"images": ["builtin:coffee"], "hashers": [{"name": "ResNet50", "input_size": 64}],
                        "sweeps": [{"family": "blur", "b": {"blur": {"kernel": 3}}}]})
    assert results.provenance["files_read"] == [{"read_as": "weights of hasher ResNet50", "path": str(cached),
                                                 "sha256": file_sha256(str(cached))}]
    _legacy_weights(cached, seed=6)  # another file under the same name
    assert hasher_key(ResNet50(weights="imagenet", input_size=64), {}) != key


def test_a_worker_loads_the_imagenet_file_the_run_found_not_one_of_its_own(tmp_path, monkeypatch):
    """A worker (a Dask worker under another user's home, here this process once KERAS_HOME points
    elsewhere) looked the ImageNet weights up in its own Keras cache, while the run had keyed its cache
    by, checked on the worker's disk and recorded in run.json the file in the cache of the process that
    made the plan: another file there gave other distances, silently. build_state (what every worker
    runs) loads the plan's file."""
    from harness.config import HasherSpec
    from harness.imagework import Plan, build_state

    name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    for seed, home in ((5, "ours"), (6, "theirs")):
        (tmp_path / home / "models").mkdir(parents=True)
        _legacy_weights(tmp_path / home / "models" / name, seed=seed)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "ours"))
    plan = Plan(hashers=(HasherSpec("ResNet50", "ResNet50", (("weights", "imagenet"), ("input_size", 64))),),
                chains=(), chain_keys=(), max_pixels=None)
    assert [path for _, path, *_ in plan.files] == [str(tmp_path / "ours" / "models" / name)]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "theirs"))  # the worker's own cache holds another file
    _, hashers = build_state(plan)
    images = variants()[:2]
    used = hashers["ResNet50"].hash_batch(images)
    ours = ResNet50(weights=str(tmp_path / "ours" / "models" / name), input_size=64).hash_batch(images)
    theirs = ResNet50(weights="imagenet", input_size=64).hash_batch(images)  # this process's cache now: theirs
    assert not np.array_equal(ours, theirs)
    np.testing.assert_array_equal(used, ours)


def test_a_weights_file_that_does_not_load_stops_the_run_with_one_line(tmp_path, synthetic_file, capsys):
    """A file the config names that is not the model's weights is bad input (exit 2, one line naming
    the file), not a machine without the CNN (a column `unavailable` and exit 0); Keras' warnings
    about the layers it skipped are not shown."""
    from harness.__main__ import main
    from harness.errors import shown

    other = tmp_path / "other.weights.h5"  # (an empty file is refused sooner: see the test after this one)
    import keras

    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(64, 64, 3)).save_weights(other)
    for weights in (other,):
        config = tmp_path / "c.yaml"
        config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, {{name: ResNet50, weights: '{weights}', "
                          "input_size: 64}]\nsweeps:\n  - family: blur\n    b: {blur: {kernel: 3}}\n")
        assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1, error[:3]
        assert error[0].startswith(f"error: {config}: hashers[1] (ResNet50): weights: cannot load ResNet50 weights "
                                   f"from {shown(str(weights))}: ")
        assert len(error[0]) < 600
        assert not (tmp_path / "out" / "distances.csv").exists()


def _weights_files(folder):
    """{case: path} of files that are no weights file, each judged by its size and first bytes only."""
    import zipfile

    hdf5 = b"\x89HDF\r\n\x1a\n"  # HDF5's signature (literal: the test stands apart from the code it checks)
    files = {"empty": folder / "empty.h5", "text": folder / "text.h5", "zeros": folder / "zeros.weights.h5",
             "huge": folder / "huge.h5", "not zip": folder / "model.keras"}
    files["empty"].write_bytes(b"")
    files["text"].write_bytes(b"<html>not found</html>")
    files["zeros"].write_bytes(bytes(4096))
    with open(files["huge"], "wb") as handle:  # an HDF5 file's start, then sparse: no disk is used
        handle.write(hdf5)
        handle.truncate(2 * 1024**3 + 1)  # 1 byte past the bound, 2 GiB
    files["not zip"].write_bytes(hdf5)  # Keras reads a .keras name as a zip archive
    with zipfile.ZipFile(folder / "good.keras", "w") as archive:  # the signature is all that is checked
        archive.writestr("model.weights.h5", b"")
    return files


def test_a_weights_file_too_large_or_of_the_wrong_kind_is_refused_before_it_is_read(tmp_path, synthetic_file,
                                                                                    capsys):
    """A weights file is read whole for its SHA-256 (the cache's key, run.json's files_read): a 6 GB
    file held a run for 14 to 28 s, where Keras then loaded it (weights with anything appended) or never
    opened it (no TensorFlow). A file larger than any keras.applications model's weights, or one that
    does not begin as Keras reads a file of its name (HDF5 for .h5, a zip archive for .keras), is
    refused as the config is read, in one line naming it, before TensorFlow is imported."""
    from harness.__main__ import main
    from harness.errors import shown
    expected = {"empty": "is not an HDF5 file, which Keras takes a name ending in '.h5' for: it is empty",
                "text": "is not an HDF5 file, which Keras takes a name ending in '.h5' for: its 22 bytes begin "
                        "b'<html>no', not b'\\x89HDF\\r\\n\\x1a\\n'",
                "zeros": "is not an HDF5 file, which Keras takes a name ending in '.h5' for: its 4,096 bytes begin",
                "huge": "is 2,147,483,649 bytes, more than any keras.applications model's weights without the top "
                        "(2,147,483,648 at most",
                "not zip": "is not a .keras archive, which Keras takes a name ending in '.keras' for: its 8 bytes"}
    files = _weights_files(tmp_path)
    assert ResNet50(weights=str(tmp_path / "good.keras")).weights  # a zip archive, as Keras reads .keras
    for case, path in files.items():
        config = tmp_path / "c.yaml"
        config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, {{name: ResNet50, weights: '{path}'}}]\n"
                          "sweeps:\n  - family: blur\n    b: {blur: {kernel: 3}}\n")
        for command in (["validate", str(config)], ["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]):
            assert main(command) == 2, (case, command)
            error = capsys.readouterr().err.strip().splitlines()
            assert len(error) == 1 and error[0].startswith(
                f"error: {config}: hashers[1].weights: {shown(str(path))} {expected[case]}"), (case, error)
        with pytest.raises(ValueError, match=expected[case][:30]):
            ResNet50(weights=str(path))
        assert not (tmp_path / "out").exists()


def test_a_file_in_keras_cache_too_large_is_refused_before_it_is_read_even_without_tensorflow(tmp_path,
                                                                                              synthetic_file):
    """The ImageNet weights' file in Keras' cache is hashed for the hasher's key even where the hasher is
    unavailable: without TensorFlow a 6 GB file there was read whole, for a column `unavailable`. It
    is judged first (its size and first bytes), and stops the run in one line naming it (exit 2).
    TensorFlow is hidden from the child process as an uninstalled one is (find_spec gives None)."""
    from harness.errors import shown

    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    cached = models / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _weights_files(tmp_path)["huge"].rename(cached)
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, ResNet50]\n"
                      "sweeps:\n  - family: blur\n    b: {blur: {kernel: 3}}\n")
    code = ("import sys\nsys.modules['tensorflow'] = None\nfrom harness.__main__ import main\n"
            f"sys.exit(main(['run', {str(config)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "KERAS_HOME": str(tmp_path / "keras")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {config}: hashers[1] (ResNet50): weights: the file in Keras' cache under the ImageNet weights' "
        f"name: {shown(str(cached))} is 2,147,483,649 bytes, more than any keras.applications model's weights "
        "without the top (2,147,483,648 at most: ConvNeXtXLarge's, the largest, are 1.4 GB, ResNet50's "
        "94,765,736 bytes); refused before reading it; put the right one there, or delete it to download it "
        "again"]
    assert done.stdout == ""


def test_a_download_that_stalls_is_given_up():
    """Keras downloads with urlretrieve, which sets no timeout: a connection that opens and then
    sends nothing held a run for ever. The construction that may download runs with a socket
    timeout, and the session's own is put back after."""
    import socket

    from harness.hashers.keras import DOWNLOAD_STALL_S, _loading

    before = socket.getdefaulttimeout()
    with _loading(download=True):
        assert socket.getdefaulttimeout() == DOWNLOAD_STALL_S
    with _loading(download=False):
        assert socket.getdefaulttimeout() == before
    assert socket.getdefaulttimeout() == before


def test_a_downloads_messages_go_to_stderr(tmp_path, capfd):
    """Keras prints "Downloading data from" and a progress bar on stdout: before the run's table, in a
    pipe reading it, under --quiet too. A download (here from a file:// origin, which Keras fetches
    the same way) writes them to stderr; stdout keeps only the run's own output."""
    import keras

    from harness.hashers.keras import _loading

    source = tmp_path / "weights.h5"
    source.write_bytes(b"\0" * 4096)
    cache = tmp_path / "cache"
    cache.mkdir()  # (Keras puts its file in /tmp/.keras where the folder given is not there)
    with _loading(download=True):
        fetched = keras.utils.get_file("weights.h5", origin=source.as_uri(), cache_dir=str(cache))
    assert fetched == str(cache / "datasets" / "weights.h5")
    assert open(fetched, "rb").read() == source.read_bytes()
    out, err = capfd.readouterr()
    assert out == "" and "Downloading data from " + source.as_uri() in err


def test_a_run_that_tries_a_download_keeps_stdout_empty_under_quiet(tmp_path, synthetic_file, monkeypatch, capfd):
    """The whole path, not _loading alone: a run whose ImageNet weights are not cached, on a machine
    whose proxy answers the probe (a socket on loopback here, which takes Keras' CONNECT and hangs
    up), has Keras try the download; its "Downloading data from" line goes to stderr, and under
    --quiet stdout stays empty. The column reads `unavailable` (exit 0)."""
    import socket
    import threading

    from harness.__main__ import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()

        def hang_up():
            while True:
                try:
                    connection, _ = listening.accept()
                except OSError:  # closed: the test is over
                    return
                with connection:
                    connection.recv(4096)

        threading.Thread(target=hang_up, daemon=True).start()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listening.getsockname()[1]}")
        config = tmp_path / "c.yaml"
        config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash, {{name: ResNet50, input_size: 32}}]\n"
                          "sweeps:\n  - family: blur\n    b: {blur: {kernel: 3}}\n")
        assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert out == ""
    assert "Downloading data from https://storage.googleapis.com/" in err
    assert "hasher ResNet50 unavailable: ImageNet weights for ResNet50 unavailable" in err


def test_auto_workers_stay_in_this_process_with_a_cnn(tmp_path):
    """TensorFlow already spreads a batch over every core: `workers=None` (auto) runs a CNN's run in
    this process, where spawned workers would each load TensorFlow and the model again."""
    import cv2

    from harness import evaluate
    from tests.conftest import make_scene

    paths = []
    for seed in range(40):  # past AUTO_MIN_JOBS, where auto would start workers
        paths.append(str(tmp_path / f"{seed}.png"))
        cv2.imwrite(paths[-1], make_scene(seed, 40, 40))
    config = {"images": paths, "sweeps": [{"family": "blur", "b": {"blur": {"kernel": 3}}}]}
    cnn = evaluate({**config, "hashers": ["aHash", {"name": "ResNet50", "weights": None, "input_size": 32}]},
                   workers=None)
    assert cnn.provenance["engine"] == "this process"
    plain = evaluate({**config, "hashers": ["aHash"]}, workers=None)
    assert plain.provenance["engine"] != "this process"  # the rule is the CNN's, not auto's for 40 images


def test_efficientnet_from_keras_cache_is_the_imagenet_network(tmp_path, monkeypatch):
    """EfficientNet builds a normalisation layer only for weights='imagenet': its cached ImageNet file,
    loaded by path, had gone into a network without that layer (238 layers, not 239), silently. The
    constructor is given 'imagenet' and Keras' fetch hands the cached file over as it is."""
    import keras

    from harness.hashers.keras import _from_cache

    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    cached = models / "efficientnetb0_notop.h5"
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(3)
    reference = keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg",
                                                  input_shape=(64, 64, 3))
    with h5py.File(cached, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from harness.hashers.keras import EfficientNetB0

    hasher = EfficientNetB0(weights="imagenet", input_size=64)
    hasher.prepare()
    model = hasher._model[0][0]
    with _from_cache(str(cached)):  # what Keras builds for 'imagenet', given the same file
        expected = keras.applications.EfficientNetB0(include_top=False, weights="imagenet", pooling="avg",
                                                     input_shape=(64, 64, 3))
    assert len(model.layers) == len(expected.layers) == len(reference.layers) + 1
    batch = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(batch, verbose=0), expected.predict(batch, verbose=0))
    assert cached.is_file()


def test_the_network_probe_goes_through_the_proxy_keras_would_use(tmp_path, monkeypatch):
    """Keras downloads through HTTPS_PROXY; the probe connected to the weights' host directly, so a
    machine whose only way out is its proxy had its CNN marked unavailable before Keras could try.
    Here the proxy is a socket listening on loopback (nothing else is reachable from the tests)."""
    import socket

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{port}")
        ResNet50()._check_weights_reachable()  # the proxy answers: Keras may download
        monkeypatch.setenv("NO_PROXY", "storage.googleapis.com")
        from harness.hashers.keras import WEIGHTS_HOST, weights_route
        assert weights_route() == (WEIGHTS_HOST, 443, "")  # exempt: straight to the host, as urllib goes
    monkeypatch.delenv("NO_PROXY")
    with socket.socket() as bound:  # bound, not listening: the port refuses, and no other process can take it
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{port}")
        with pytest.raises(UnavailableError) as caught:
            ResNet50()._check_weights_reachable()
    message = str(caught.value)
    assert f"at the proxy http://127.0.0.1:{port})" in message and "secret" not in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message


@pytest.mark.parametrize("proxy, route", [
    ("http://proxy.example:3128", ("proxy.example", 3128, "http://proxy.example:3128")),
    ("http://proxy.example", ("proxy.example", 443, "http://proxy.example:443")),  # urllib's port for https
    ("proxy.example:8080", ("proxy.example", 8080, "http://proxy.example:8080")),
    ("http://[::1]:3128", ("::1", 3128, "http://[::1]:3128")),
    ("https://u:p@proxy.example", ("proxy.example", 443, "https://proxy.example:443")),
])
def test_the_probe_connects_where_urllib_would(monkeypatch, proxy, route):
    from harness.hashers.keras import weights_route

    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    assert weights_route() == route
