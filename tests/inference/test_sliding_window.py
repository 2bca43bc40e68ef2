"""sliding_window_inference: equals the whole-image prediction and MONAI; label mode; skipping."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference as monai_sliding_window_inference
from torch import nn

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference import WindowStats, sliding_window_inference
from medseg3d.nn import layers


def pointwise(spatial_dims: int, in_channels: int = 1, out_channels: int = 3) -> nn.Module:
    """A 1x1 convolution: translation-equivariant, so any stitching must reproduce it exactly."""
    return layers.conv(spatial_dims, in_channels, out_channels, kernel_size=1).eval()


class SmallConvNet(nn.Module):
    """A real (two 3x3 convolutions, nonlinear) network whose output depends on the window borders."""

    def __init__(self, spatial_dims: int, in_channels: int = 1, out_channels: int = 3):
        super().__init__()
        self.out_channels = out_channels
        self.body = nn.Sequential(
            layers.conv(spatial_dims, in_channels, 4, 3),
            nn.LeakyReLU(0.1),
            layers.conv(spatial_dims, 4, 4, 3),
            nn.Tanh(),
            layers.conv(spatial_dims, 4, out_channels, 1),
        )

    def forward(self, x):
        return self.body(x) * 3.0


class Counting(nn.Module):
    """Wraps a network and counts the windows it was called on."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network
        self.out_channels = getattr(network, "out_channels", None)
        self.windows = 0
        self.calls = 0

    def forward(self, x):
        self.windows += x.shape[0]
        self.calls += 1
        return self.network(x)


SHAPES = [
    ((1, 1, 70, 53, 45), 32),  # odd 3D shape, several windows per axis
    ((1, 1, 20, 9, 30), 32),  # smaller than the patch on every axis (padded, cropped back)
    ((1, 2, 40, 12, 33), (16, 24, 16)),  # smaller on one axis only, anisotropic patch
    ((2, 1, 37, 29), 16),  # 2D, two images
    ((1, 1, 10, 40), (16, 16)),  # 2D, smaller than the patch on one axis
]


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize("shape, patch", SHAPES)
def test_pointwise_predictor_equals_whole_image(shape, patch, mode):
    x = torch.randn(shape)
    net = pointwise(len(shape) - 2, shape[1])
    with torch.no_grad():
        expected = net(x)
    got = sliding_window_inference(x, net, patch, mode=mode, batch_size=7)
    assert got.shape == expected.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_overlap_per_axis_and_zero_overlap():
    x = torch.randn(1, 1, 34, 29, 21)
    net = pointwise(3)
    with torch.no_grad():
        expected = net(x)
    for overlap in ((0.5, 0.0, 0.75), 0.0):
        got = sliding_window_inference(x, net, 16, overlap=overlap, batch_size=64)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["gaussian", "constant"])
@pytest.mark.parametrize(
    "shape, patch",
    [
        ((1, 1, 32, 40, 24), 16),  # 16 + k x 8 on every axis: MONAI's windows are ours
        ((2, 2, 48, 36), (16, 24)),  # 2D; 48 = 16 + 4 x 8, 36 = 24 + 1 x 12
        ((1, 1, 12, 40, 24), 16),  # padded along the first axis, as MONAI pads
    ],
)
def test_equals_monai_where_windows_coincide(shape, patch, mode):
    torch.manual_seed(1)
    x = torch.randn(shape)
    net = SmallConvNet(len(shape) - 2, shape[1]).eval()
    roi = patch if isinstance(patch, tuple) else (patch,) * (len(shape) - 2)
    with torch.no_grad():
        expected = monai_sliding_window_inference(x, roi, 4, net, overlap=0.5, mode=mode)
    got, stats = sliding_window_inference(x, net, patch, mode=mode, return_stats=True)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert stats.windows == stats.predicted


def test_labels_equal_argmax_of_probabilities_exactly():
    torch.manual_seed(2)
    x = torch.randn(2, 1, 29, 21, 14)
    net = SmallConvNet(3, 1, 5).eval()
    options = dict(overlap=0.5, batch_size=32, mirror_axes=(1,))
    patch = (16, 12, 8)
    probabilities = sliding_window_inference(x, net, patch, output="probabilities", **options)
    labels = sliding_window_inference(x, net, patch, output="labels", **options)
    logits = sliding_window_inference(x, net, patch, **options)
    assert labels.shape == (2, 1, 29, 21, 14) and labels.dtype == torch.uint8
    assert torch.equal(labels[:, 0].long(), probabilities.argmax(1))
    torch.testing.assert_close(probabilities, torch.softmax(logits, 1), atol=1e-6, rtol=0)
    assert len(labels.unique()) > 1  # a non-trivial case


def test_sigmoid_labels_threshold_the_probabilities_and_float16_probabilities():
    torch.manual_seed(3)
    x = torch.randn(1, 1, 30, 26)
    net = SmallConvNet(2, 1, 3).eval()
    probabilities = sliding_window_inference(
        x, net, 16, output="probabilities", activation="sigmoid"
    )
    labels = sliding_window_inference(x, net, 16, output="labels", activation="sigmoid")
    assert labels.shape == (1, 3, 30, 26) and labels.dtype == torch.uint8
    assert torch.equal(labels.bool(), probabilities > 0.5)
    half = sliding_window_inference(x, net, 16, output="probabilities", dtype=torch.float16)
    full = sliding_window_inference(x, net, 16, output="probabilities")
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=1e-3, rtol=0)


def test_label_mode_keeps_no_weight_channel_and_skips_the_softmax():
    """Labels come from the undivided weighted sums (argmax ignores a positive per-voxel scale
    and the softmax), so without skipped windows a cell holds C channels, not C + 1."""
    torch.manual_seed(4)
    x = torch.randn(1, 1, 40, 30, 20)
    net, classes = SmallConvNet(3, 1, 4).eval(), 4
    options = dict(overlap=0.5, batch_size=32, return_stats=True)
    labels, label_stats = sliding_window_inference(x, net, 16, output="labels", **options)
    logits, logit_stats = sliding_window_inference(x, net, 16, output="logits", **options)
    assert label_stats.peak_buffer_bytes * (classes + 1) == logit_stats.peak_buffer_bytes * classes
    assert torch.equal(labels[:, 0].long(), logits.argmax(1))
    mask = torch.zeros(40, 30, 20)
    mask[24:] = 1  # windows before x = 24 are skipped
    skipped, skip_stats = sliding_window_inference(
        x, net, 16, output="labels", skip_mask=mask, **options
    )
    assert skip_stats.skipped > 0
    assert skip_stats.peak_buffer_bytes <= logit_stats.peak_buffer_bytes
    assert (skipped[:, :, :16] == 0).all()  # only skipped windows there: background
    assert torch.equal(skipped[:, :, 32:], labels[:, :, 32:])  # only predicted windows there


def test_stitch_threads_change_nothing_but_speed_and_restore_the_thread_count():
    torch.manual_seed(5)
    x = torch.randn(1, 1, 30, 20, 12)
    net = SmallConvNet(3, 1, 3).eval()
    threads = torch.get_num_threads()
    seen = []

    def predictor(batch):
        seen.append(torch.get_num_threads())
        return net(batch)

    one = sliding_window_inference(x, predictor, 12, output="labels", batch_size=2)
    assert torch.get_num_threads() == threads and set(seen) == {threads}
    many = sliding_window_inference(x, net, 12, output="labels", stitch_threads=None)
    assert torch.equal(one, many)
    with pytest.raises(ConfigError, match="stitch_threads"):
        sliding_window_inference(x, net, 12, stitch_threads=0)
    assert torch.get_num_threads() == threads


def test_exact_ties_resolve_to_the_lower_class_index():
    def tied(batch):  # classes 1 and 2 exactly equal and above 0 and 3
        scores = torch.zeros(batch.shape[0], 4, *batch.shape[2:])
        scores[:, 1:3] = 1.0
        return scores

    x = torch.randn(1, 1, 20, 20)
    labels = sliding_window_inference(x, tied, 8, output="labels")
    probabilities = sliding_window_inference(x, tied, 8, output="probabilities")
    assert (labels == 1).all()
    assert torch.equal(labels[:, 0].long(), probabilities.argmax(1))


def test_many_classes_give_int16_labels():
    x = torch.randn(1, 1, 8, 8)
    labels = sliding_window_inference(x, pointwise(2, 1, 300), 8, output="labels")
    assert labels.dtype == torch.int16


def test_deep_supervision_list_uses_the_full_resolution_output():
    net = pointwise(3)

    def deep_supervision(x):
        full = net(x)
        return [full, full[:, :, ::2, ::2, ::2]]

    x = torch.randn(1, 1, 40, 30, 20)
    expected = sliding_window_inference(x, net, 16)
    torch.testing.assert_close(sliding_window_inference(x, deep_supervision, 16), expected)


def test_mirror_tta_averages_flipped_predictions():
    torch.manual_seed(4)
    x = torch.randn(1, 1, 12, 10, 8)
    net = SmallConvNet(3).eval()
    flips = [(), (2,), (4,), (2, 4)]
    with torch.no_grad():
        logits = [torch.flip(net(torch.flip(x, f)), f) for f in flips]
    got = sliding_window_inference(x, net, (12, 10, 8), mirror_axes=(0, 2), mode="constant")
    torch.testing.assert_close(got, torch.stack(logits).mean(0), atol=1e-5, rtol=0)
    got = sliding_window_inference(
        x, net, (12, 10, 8), mirror_axes=(2, 0), average="probabilities", output="probabilities"
    )
    expected = torch.stack([torch.softmax(t, 1) for t in logits]).mean(0)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # a mirror-equivariant predictor is unchanged by mirroring
    point = pointwise(3)
    with torch.no_grad():
        expected = point(x)
    got = sliding_window_inference(x, point, 8, mirror_axes=(0, 1, 2))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


class Thresholded(nn.Module):
    """Background (class 0) where the input is below -1, otherwise a real conv net's logits."""

    out_channels = 3

    def __init__(self):
        super().__init__()
        self.net = SmallConvNet(3, 1, 3)

    def forward(self, x):
        logits = self.net(x)
        background = torch.tensor([20.0, -20.0, -20.0]).view(1, 3, 1, 1, 1)
        return torch.where(x < -1, background, logits)


def _ct_like(shape=(1, 1, 40, 32, 24)) -> torch.Tensor:
    x = torch.full(shape, -1000.0)  # air
    x[:, :, 4:14, 3:15, 2:12] = torch.randn(1, 1, 10, 12, 10)  # the body in one corner
    return x


def test_background_windows_are_skipped_and_change_nothing_there():
    x = _ct_like()
    net = Counting(Thresholded().eval())
    full, full_stats = sliding_window_inference(
        x, net, 12, output="labels", return_stats=True, batch_size=32
    )
    assert net.windows == full_stats.windows == full_stats.predicted
    net.windows = 0
    skipped, stats = sliding_window_inference(
        x, net, 12, output="labels", skip_below=-500, return_stats=True, batch_size=32
    )
    assert stats.skipped >= stats.windows // 2 and stats.predicted + stats.skipped == stats.windows
    assert net.windows == stats.predicted  # skipped windows never reach the predictor
    assert torch.equal(skipped, full)
    # logits are unchanged wherever no skipped window reached, and background elsewhere
    logits_full = sliding_window_inference(x, net, 12, batch_size=32)
    logits_skip = sliding_window_inference(x, net, 12, skip_below=-500, batch_size=32)
    assert torch.equal(logits_skip.argmax(1), logits_full.argmax(1))
    body = (slice(None), slice(None), slice(4, 14), slice(3, 15), slice(2, 12))
    torch.testing.assert_close(logits_skip[body], logits_full[body], atol=1e-5, rtol=0)


def test_skip_by_mask_and_everything_skipped():
    x = _ct_like()
    mask = torch.zeros(40, 32, 24, dtype=torch.bool)
    mask[4:14, 3:15, 2:12] = True
    net = Counting(Thresholded().eval())
    full = sliding_window_inference(x, net, 16, output="labels")
    net.windows = 0
    masked, stats = sliding_window_inference(
        x, net, 16, output="labels", skip_mask=mask, return_stats=True
    )
    assert stats.skipped > 0 and net.windows == stats.predicted
    assert torch.equal(masked, full)
    net.windows = 0
    empty = torch.zeros_like(mask)
    probabilities, stats = sliding_window_inference(
        x, net, 16, output="probabilities", skip_mask=empty, return_stats=True, background=1
    )
    assert net.windows == 0 and stats.skipped == stats.windows  # out_channels from the network
    assert torch.equal(probabilities[:, 1], torch.ones(1, 40, 32, 24))


def test_batch_items_are_independent_and_stats_count_calls():
    torch.manual_seed(5)
    x = torch.randn(3, 1, 24, 20, 16)
    net = Counting(SmallConvNet(3).eval())
    together, stats = sliding_window_inference(x, net, 16, batch_size=4, return_stats=True)
    assert isinstance(stats, WindowStats) and stats.predictor_calls == net.calls
    assert stats.windows == 3 * 2 * 2 * 1
    for item in range(3):
        alone = sliding_window_inference(x[item : item + 1], net, 16, batch_size=3)
        torch.testing.assert_close(together[item : item + 1], alone, atol=1e-6, rtol=0)


def test_label_mode_holds_a_band_of_cells_not_the_volume():
    x = torch.randn(1, 1, 192, 48, 32)
    net = pointwise(3, 1, 4)
    _, stats = sliding_window_inference(
        x, net, 32, output="labels", return_stats=True, batch_size=32
    )
    whole = 4 * (4 + 1) * x.numel()  # float32 scores and weights of the whole volume
    plane = 4 * (4 + 1) * 48 * 32
    assert stats.peak_buffer_bytes <= plane * (32 - 16 + 32 * 32 / 48)  # formula in the docs
    assert stats.peak_buffer_bytes < 0.2 * whole


def test_a_long_last_axis_is_streamed_along():
    x = torch.randn(1, 1, 24, 20, 160)
    net = pointwise(3, 1, 2)
    with torch.no_grad():
        expected = net(x)
    got, stats = sliding_window_inference(x, net, 16, return_stats=True)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    plane = 4 * (2 + 1) * 24 * 20  # a plane across the last axis
    assert stats.peak_buffer_bytes <= plane * (16 - 8 + 16 * 16 / 24)


def test_monai_metatensor_keeps_its_metadata_and_progress_bar_runs(capsys):
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    x = MetaTensor(torch.randn(1, 1, 20, 20, 20), affine=affine, meta={"filename": "scan.nii"})
    got = sliding_window_inference(
        x, pointwise(3), 16, progress=True, compute_device="cpu", device="cpu"
    )
    assert isinstance(got, MetaTensor) and torch.equal(got.affine, affine.double())
    assert got.meta["filename"] == "scan.nii"
    assert "window" in capsys.readouterr().err


def test_clear_errors():
    x = torch.randn(1, 1, 20, 20, 20)
    net = pointwise(3)
    with pytest.raises(ShapeError, match="spatial size"):
        sliding_window_inference(x, lambda w: w[:, :, 1:], 16)
    with pytest.raises(ShapeError, match="patch_size"):
        sliding_window_inference(x, net, (16, 16))
    with pytest.raises(ConfigError, match="output"):
        sliding_window_inference(x, net, 16, output="masks")
    with pytest.raises(ConfigError, match="average"):
        sliding_window_inference(x, net, 16, average="probabilities")
    with pytest.raises(ConfigError, match="mirror_axes"):
        sliding_window_inference(x, net, 16, mirror_axes=(3,))
    with pytest.raises(ShapeError, match="channels"):
        sliding_window_inference(x, net, 16, out_channels=2)
    with pytest.raises(ShapeError, match="inputs"):
        sliding_window_inference(torch.randn(20, 20), net, 16)
    net.size_divisor = 8
    with pytest.raises(ShapeError, match=r"\(24, 24, 24\)"):
        sliding_window_inference(x, net, 20)


def test_sigmoid_with_averaged_probabilities_still_thresholds():
    torch.manual_seed(6)
    x = torch.randn(1, 1, 20, 18)
    net = SmallConvNet(2, 1, 2).eval()
    options = dict(activation="sigmoid", average="probabilities", mirror_axes=(0,))
    probabilities = sliding_window_inference(x, net, 16, output="probabilities", **options)
    labels = sliding_window_inference(x, net, 16, output="labels", **options)
    assert labels.shape == (1, 2, 20, 18)
    assert torch.equal(labels.bool(), probabilities > 0.5)
    with pytest.raises(ConfigError, match="background"):
        sliding_window_inference(x, net, 16, background=2)


class ReusedBuffer(nn.Module):
    """Returns one preallocated output tensor every call (CUDA graphs, TensorRT, ORT IO binding)."""

    def __init__(self, network):
        super().__init__()
        self.network, self.out_channels, self.buffer = network, 3, None

    def forward(self, x):
        y = self.network(x)
        if self.buffer is None or self.buffer.shape != y.shape:
            self.buffer = torch.empty_like(y)
        return self.buffer.copy_(y)


def test_a_predictor_that_reuses_its_output_buffer_gives_the_same_result():
    torch.manual_seed(0)
    net = SmallConvNet(3).eval()
    x = torch.randn(1, 1, 32, 28, 24)
    for mirror in (None, (0, 1, 2)):
        expected = sliding_window_inference(x, net, 16, mirror_axes=mirror, output="probabilities")
        got = sliding_window_inference(
            x, ReusedBuffer(net), 16, mirror_axes=mirror, output="probabilities"
        )
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # a predictor whose output is a view of its input (here: of its channels) is never written
    x3 = torch.randn(1, 4, 24, 24, 24)
    keep = x3.clone()
    out = sliding_window_inference(x3, lambda b: b[:, 1:], 16, mirror_axes=(0,))
    torch.testing.assert_close(out, keep[:, 1:], atol=1e-5, rtol=0)
    assert torch.equal(x3, keep)


def test_mirror_axes_zero_means_the_first_axis_not_no_mirroring():
    torch.manual_seed(1)
    net = Counting(SmallConvNet(3).eval())
    x = torch.randn(1, 1, 16, 16, 16)
    sliding_window_inference(x, net, 16, mirror_axes=0)
    assert net.calls == 2


def test_nan_input_is_refused_with_one_line():
    from medseg3d.errors import InvalidVoxelError

    x = torch.randn(1, 1, 20, 20, 20)
    x[0, 0, 3, 4, 5] = float("nan")
    with pytest.raises(InvalidVoxelError, match="1 NaN/Inf voxel"):
        sliding_window_inference(x, pointwise(3), 16)


def test_all_windows_skipped_without_out_channels_writes_only_background():
    def always_class_two(b):
        out = torch.zeros(b.shape[0], 3, *b.shape[2:])
        out[:, 2] = 5.0
        return out

    air = torch.full((1, 1, 40, 40, 40), -1000.0)
    labels, stats = sliding_window_inference(
        air, always_class_two, 16, skip_below=-500, output="labels", return_stats=True
    )
    assert stats.predicted == 0 and labels.unique().tolist() == [0]


def test_bad_dtype_padding_device_and_huge_patch_are_one_line_errors():
    x = torch.randn(1, 1, 12, 12, 12)
    net = pointwise(3, out_channels=3)
    with pytest.raises(ConfigError, match="cannot hold label 299"):
        sliding_window_inference(
            x, pointwise(3, out_channels=300), 16, output="labels", dtype=torch.uint8
        )
    with pytest.raises(ConfigError, match="needs a floating dtype"):
        sliding_window_inference(x, net, 16, output="probabilities", dtype=torch.int8)
    with pytest.raises(ConfigError, match="needs an integer dtype"):
        sliding_window_inference(x, net, 16, output="labels", dtype=torch.float16)
    with pytest.raises(ConfigError, match="unknown padding_mode 'foo'"):
        sliding_window_inference(x, net, 16, padding_mode="foo")
    with pytest.raises(ConfigError, match="cannot pad an axis of 4 voxels"):
        sliding_window_inference(torch.randn(1, 1, 4, 12, 12), net, 16, padding_mode="reflect")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        sliding_window_inference(x, net, 16, device="tpu")
    with pytest.raises(ConfigError, match="far larger than the image"):
        sliding_window_inference(x, net, 1000)
    with pytest.raises(ShapeError, match="empty axis"):
        sliding_window_inference(torch.randn(0, 1, 20, 20, 20), net, 16)
    with pytest.raises(ShapeError, match=r"skip_mask has shape \(10, 10, 10\)"):
        sliding_window_inference(x, net, 16, skip_mask=torch.ones(10, 10, 10))
