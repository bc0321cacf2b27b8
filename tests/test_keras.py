"""The Keras path: real architecture with random weights (no network here), batching, weights errors."""

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
