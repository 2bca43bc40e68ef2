"""One parametrized test base for every model of the registry x {2D, 3D}.

Tiny networks (features 4, depth 2) on 32-voxel inputs keep the whole file to a few seconds.
"""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DeepSupervisionLoss, DiceCELoss

from medseg3d.errors import MedsegError, ShapeError
from medseg3d.nn import MODELS, build_model

NAMES = MODELS.names()
DIMS = (2, 3)
TINY = {"features": 4, "depth": 2}
SHAPES = {2: (32, 24), 3: (32, 24, 16)}  # distinct sizes per axis catch axis mix-ups
CASES = [pytest.param(name, dims, id=f"{name}-{dims}d") for name in NAMES for dims in DIMS]


def make(name: str, dims: int, **options):
    return build_model(name, dims, 2, 3, **{**TINY, **options})


def test_registry_has_every_model_of_the_spec():
    assert set(NAMES) == {
        "unet",
        "attention_unet",
        "residual_unet",
        "r2unet",
        "recurrent_unet",
        "dense_unet",
        "inception_unet",
        "unetpp",
        "bcdu_net",
    }


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_output_shape_attributes_and_eval_determinism(name, dims):
    model = make(name, dims, dropout=0.3)
    assert (model.spatial_dims, model.depth, model.size_divisor) == (dims, 2, 4)
    assert model.padding == "same" and model.deep_supervision is False
    x = torch.randn(2, 2, *SHAPES[dims])
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert first.shape == (2, 3, *SHAPES[dims])
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x)), "dropout should act in training mode"


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_deep_supervision_and_backward_reaches_every_parameter(name, dims):
    model = make(name, dims, deep_supervision=True).train()
    x = torch.randn(2, 2, *SHAPES[dims])
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) == model.depth
    full = SHAPES[dims]
    if name == "unetpp":  # heads on X(0, depth..1), all full resolution
        expected = [full] * model.depth
    else:
        expected = [tuple(s // 2**level for s in full) for level in range(model.depth)]
    assert [tuple(o.shape[2:]) for o in outputs] == expected
    assert all(o.shape[:2] == (2, 3) for o in outputs)

    # MONAI's deep-supervision loss takes the list as is (it resizes the target per output).
    target = torch.randint(0, 3, (2, 1, *full)).float()
    loss = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))(outputs, target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"no gradient reaches: {missing}"

    model.eval()
    with torch.no_grad():
        single = model(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, 3, *full)


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_wrong_sizes_are_refused_with_the_nearest_valid_sizes(name, dims):
    model = make(name, dims)
    shape = list(SHAPES[dims])
    shape[-1] = 30  # depth 2: multiples of 4 are valid
    with pytest.raises(ShapeError, match=rf"axis {dims - 1} .*nearest valid sizes: 28 or 32"):
        model(torch.zeros(1, 2, *shape))
    with pytest.raises(ShapeError, match="2 input channel"):
        model(torch.zeros(1, 1, *SHAPES[dims]))
    with pytest.raises(ShapeError, match=f"{dims} spatial dims"):
        model(torch.zeros(1, 2, 32))


@pytest.mark.parametrize("name", NAMES)
def test_3d_model_runs_in_monai_sliding_window_inference(name):
    model = make(name, 3, deep_supervision=True).eval()  # eval: one tensor even with DS
    roi = (16, 16, 16)
    image = torch.randn(1, 2, 40, 20, 16)
    with torch.no_grad():
        out = sliding_window_inference(image, roi, 2, model, overlap=0.25, mode="gaussian")
        assert out.shape == (1, 3, 40, 20, 16) and torch.isfinite(out).all()
        # a volume of exactly one window gives the network's own output
        window = image[..., :16, :16, :16]
        direct = model(window)
        torch.testing.assert_close(sliding_window_inference(window, roi, 1, model), direct)


@pytest.mark.parametrize(("name", "dims"), CASES)
def test_state_dict_round_trip_reproduces_the_output(name, dims):
    model, copy = make(name, dims).eval(), make(name, dims).eval()
    x = torch.randn(1, 2, *SHAPES[dims])
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["unet", "attention_unet", "residual_unet"])
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("upsample", ["transpose", "interp"])
def test_valid_padding_returns_the_announced_size(name, dims, upsample):
    model = make(name, dims, padding="valid", upsample=upsample)
    sizes = (44, 52, 60)[:dims]  # depth 2: valid sizes are 4k + 12, k >= 8
    assert model.output_size(sizes) == tuple(s - 40 for s in sizes)
    out = model(torch.randn(1, 2, *sizes))
    assert out.shape == (1, 3, *model.output_size(sizes))
    with pytest.raises(ShapeError, match="nearest valid sizes: 44 or 48"):
        model(torch.randn(1, 2, *([46] * dims)))


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"unet", "attention_unet", "residual_unet"}))
def test_valid_padding_is_refused_where_maps_of_one_size_are_added(name):
    with pytest.raises(MedsegError, match="padding='same'"):
        make(name, 2, padding="valid")


@pytest.mark.parametrize(
    "norm", ["batch", "instance", "group", "none", None, ("group", {"num_groups": 2})]
)
@pytest.mark.parametrize(
    "act", ["relu", "leaky_relu", "prelu", "gelu", ("leaky_relu", {"negative_slope": 0.1})]
)
def test_norm_and_activation_options(norm, act):
    model = build_model("unet", 2, 1, 2, features=4, depth=2, norm=norm, act=act)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 2, 16, 16)


@pytest.mark.parametrize("name", NAMES)
def test_traced_3d_model_matches_eager(name):
    model = make(name, 3).eval()
    x = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad(), pytest.warns(torch.jit.TracerWarning):  # the size check is Python
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), model(x))
