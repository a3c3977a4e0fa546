import pytest
import torch
from torch import nn
from user_net import SmallNet, net

from perceptreg.adversarial.attacks import PGD
from perceptreg.attaching.fitting import fit_decoders
from perceptreg.core.attached import attach
from perceptreg.core.decoders import build_decoder
from perceptreg.core.errors import PerceptregError

LAYERS = ["stem", "block1", "block2", "fc1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def all_hooks(model: nn.Module) -> list:
    return [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._forward_pre_hooks.values())]


# --- attach: layers, hooks, freezing -----------------------------------------------------------

def test_layers_run_in_forward_order_and_shapes_are_known():
    seen = attach(net(), ["fc1", "block1.conv1", "stem", "block2", "fc1"], (1, 28, 28))
    assert seen.layers == ("stem", "block1.conv1", "block2", "fc1")
    assert seen.activation_shapes == {"stem": (16, 14, 14), "block1.conv1": (16, 14, 14),
                                      "block2": (32, 7, 7), "fc1": (64,)}
    assert seen.num_classes == 10 and seen.input_shape == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28)
    logits, acts = seen.features(x)
    assert logits.shape == (3, 10) and list(acts) == list(seen.layers)
    assert seen.perceive(x).shape == (3, 1, 28, 28)  # the deepest layer: fc1
    assert torch.equal(seen.perceive(x), seen.decoder("fc1")(acts["fc1"]))
    perceived = seen.perceive_all(x)
    assert torch.equal(perceived["block1.conv1"], seen.perceive(x, layer="block1.conv1"))
    assert "block1__conv1" in seen.decoders  # ModuleDict keys cannot hold "."
    assert list(seen.features(x, layers="stem")[1]) == ["stem"]
    table = seen.describe()
    assert [row["layer"] for row in table] == list(seen.layers)
    assert all(row["decoder_parameters"] > 0 for row in table)
    with pytest.raises(PerceptregError, match="'fc2' has no decoder"):
        seen.perceive(x, layer="fc2")


def test_hooks_removed_after_success_and_after_an_exception():
    model = net()
    seen = attach(model, LAYERS, (1, 28, 28))
    assert all_hooks(model) == []
    seen.perceive_all(torch.rand(2, 1, 28, 28))
    assert all_hooks(model) == []
    model.trip.armed = True
    with pytest.raises(RuntimeError, match="tripwire"):
        seen.perceive_all(torch.rand(2, 1, 28, 28))
    assert all_hooks(model) == []


def test_the_model_stays_frozen_bit_for_bit(digits):
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = attach(model, LAYERS, (1, 28, 28))
    seen.train()
    assert not model.training and all(not m.training for m in model.modules())
    assert all(d.training for d in seen.decoders.values())
    fit_decoders(seen, digits[0].subset(torch.arange(128)), epochs=1, progress=False)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BN running stats, counts
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_attached_model_is_a_classifier_for_attacks():
    model = net()
    seen = attach(model, ["block2"], (1, 28, 28))
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    adv = PGD(seen, eps=0.1, steps=2)(x, y)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.1 + 1e-6
    assert not model.training and not any(p.requires_grad for p in model.parameters())


# --- decoders -----------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, image", [
    ((32, 7, 7), (1, 28, 28)), ((16, 14, 14), (1, 28, 28)), ((8, 5, 5), (1, 28, 28)),
    ((16, 28, 28), (1, 28, 28)), ((64,), (1, 28, 28)), ((128, 1, 1), (1, 28, 28)),
    ((17, 10), (1, 28, 28)), ((32, 8, 8), (3, 32, 32)), ((256, 3, 5), (3, 20, 30)),
])
def test_decoder_maps_any_activation_to_the_image_shape(activation, image):
    decoder = build_decoder(activation, image)
    out = decoder(torch.randn(2, *activation))
    assert out.shape == (2, *image)
    assert isinstance(decoder[-1], nn.Sigmoid)
    widths = [m.out_channels for m in decoder if isinstance(m, nn.ConvTranspose2d)]
    assert all(16 <= w <= 128 for w in widths) and widths == sorted(widths, reverse=True)


def test_output_bias_starts_at_the_mean_pixel(digits):
    train = digits[0].subset(torch.arange(64))
    seen = attach(net(), ["stem", "fc1"], (1, 28, 28), pixel_mean=0.2)
    for name in seen.layers:
        assert torch.allclose(seen.decoder(name)[-2].bias, torch.logit(torch.tensor([0.2])))
    seen = attach(net(), ["stem", "fc1"], (1, 28, 28))  # no pixel mean: taken from the data
    fit_decoders(seen, train, epochs=1, lr=0.0, progress=False)  # lr 0: no step moves a weight
    expected = torch.logit(train.pixel_mean())
    for name in seen.layers:
        assert torch.allclose(seen.decoder(name)[-2].bias, expected)


def test_user_decoders_are_used_and_checked():
    mine = nn.Sequential(nn.Linear(64, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
    seen = attach(net(), ["block2", "fc1"], (1, 28, 28), decoders={"fc1": mine})
    assert seen.decoder("fc1") is mine
    with pytest.raises(PerceptregError, match=r"decoders\['fc1'\].*\(2, 1, 28, 28\).*\(2, 1, 14, 56\)"):
        attach(net(), ["fc1"], (1, 28, 28),
               decoders={"fc1": nn.Sequential(nn.Linear(64, 784), nn.Unflatten(1, (1, 14, 56)))})
    with pytest.raises(PerceptregError, match="`decoders`: fc2 not among layers"):
        attach(net(), ["fc1"], (1, 28, 28), decoders={"fc2": mine})


# --- what a layer gives ---------------------------------------------------------------------

class PairLayer(nn.Module):
    def forward(self, x):
        return "meta", x * 2, x * 3


class PairNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pair = PairLayer()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        _, doubled, _ = self.pair(x)
        return self.head(doubled.flatten(1))


def test_a_tuple_output_is_an_error_naming_select_and_select_picks_the_tensor():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(PerceptregError, match="'pair' gives a tuple, not a tensor; in Python, pass attach\\(..., select="):
        attach(PairNet(), ["pair"], (1, 4, 4))
    seen = attach(PairNet(), ["pair"], (1, 4, 4), select=lambda name, out: out[2])
    assert torch.equal(seen.activations(x)["pair"], x * 3)
    with pytest.raises(PerceptregError, match="'pair' gives a str.*select"):
        attach(PairNet(), ["pair"], (1, 4, 4), select=lambda name, out: out[0])


# --- errors -----------------------------------------------------------------------------------

def test_unknown_layer_lists_the_closest_names_first():
    with pytest.raises(PerceptregError) as err:
        attach(net(), ["blok2"], (1, 28, 28))
    message = str(err.value)
    assert "layers" in message and "'blok2'" in message and "\n" not in message
    listed = message.split("closest first: ")[1].split(", ")
    assert listed[0] == "block2" and "block1" in listed[:5] and "fc2" in listed


class Skipping(SmallNet):
    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(3, 3)


class ReturnsTuple(SmallNet):
    def forward(self, x):
        return super().forward(x), x


@pytest.mark.parametrize("model, kwargs, match", [
    (Skipping(), {"layers": ["stem", "unused"]}, "`layers`: unused never run"),
    (ReturnsTuple(), {}, "logits of shape \\(batch, classes\\).*a tuple"),
    (nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Unflatten(1, (2, 5))), {"layers": ["1"]},
     "logits of shape \\(batch, classes\\).*shape \\(2, 2, 5\\)"),
    (SmallNet(), {"input_shape": (3, 28, 28)}, "`input_shape` \\(3, 28, 28\\).*RuntimeError"),
    (SmallNet(), {"input_shape": (28, 28)}, "`input_shape` must be \\(channels, height, width\\)"),
    (SmallNet(), {"normalize": ([0.5, 0.5, 0.5], [0.2, 0.2, 0.2])}, "`normalize` needs one value per input channel \\(1\\)"),
    (SmallNet(), {"normalize": ([0.5], [0.0])}, "`normalize`: every mean must be finite and every std finite and > 0"),
    (SmallNet(), {"layers": []}, "`layers` is empty"),
])
def test_bad_input_is_named(model, kwargs, match):
    args = {"layers": ["stem"], "input_shape": (1, 28, 28), **kwargs}
    with pytest.raises(PerceptregError, match=match):
        attach(model, args.pop("layers"), args.pop("input_shape"), **args)
    assert all_hooks(model) == []
    assert model.training and all(p.requires_grad for p in model.parameters())  # as found


def test_normalize_is_applied_before_the_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    seen = attach(model, ["1"], (3, 8, 8), normalize=(mean, std))
    x = torch.rand(4, 3, 8, 8)
    expected = model((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(seen(x), expected, atol=1e-6)
    assert torch.allclose(seen.classify(x), expected, atol=1e-6)
    assert not torch.allclose(seen(x), model(x), atol=1e-3)


# --- the user's model is handed back as it was ---------------------------------------------------

def user_frozen_net():
    """The user's net in train mode, with its stem frozen and its dropout put in eval by hand."""
    model = net()
    model.train()
    model.stem.requires_grad_(False)
    model.drop.eval()
    return model


def flags(model):
    return ({n: p.requires_grad for n, p in model.named_parameters()},
            {n: m.training for n, m in model.named_modules()})


def test_release_gives_back_the_users_requires_grad_and_modes():
    model = user_frozen_net()
    before = flags(model)
    seen = attach(model, LAYERS, (1, 28, 28))
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert seen.release() is model
    assert flags(model) == before
    assert not model.drop.training and model.training  # each module its own mode, not one for all


def test_with_block_releases_the_model_even_after_an_error():
    model = user_frozen_net()
    before = flags(model)
    with pytest.raises(RuntimeError, match="inside"):
        with attach(model, LAYERS, (1, 28, 28)) as seen:
            assert seen.model is model and not model.training
            raise RuntimeError("inside")
    assert flags(model) == before


def test_unfrozen_leaves_the_parameters_the_user_froze_frozen():
    model = user_frozen_net()
    seen = attach(model, LAYERS, (1, 28, 28))
    with seen.unfrozen():
        assert not any(p.requires_grad for p in model.stem.parameters())
        assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("stem."))
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
