"""build_model: architectures, one-channel stem from ImageNet kernels, no downloads."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from trainer.errors import UserError
from trainer.model import build_model, cached_weights_path


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch.hub pointed at an empty folder, so the real cache is never consulted."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def _stem(model: nn.Module, arch: str) -> nn.Conv2d:
    return model.features.conv0 if arch == "densenet121" else model.conv1


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "densenet121"])
def test_scratch_model_takes_one_channel_and_gives_four_logits(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    assert _stem(model, arch).in_channels == 1
    with torch.no_grad():
        out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 4)


def test_same_seed_gives_same_initial_weights():
    torch.manual_seed(3)
    a = build_model("resnet18")
    torch.manual_seed(3)
    b = build_model("resnet18")
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert torch.equal(a.fc.weight, b.fc.weight)


@pytest.mark.slow
def test_pretrained_from_file_sums_rgb_kernels(tmp_path, empty_hub):
    torch.manual_seed(1)
    imagenet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "fake-resnet18.pth"
    torch.save(imagenet.state_dict(), path)

    model = build_model("resnet18", pretrained=True, weights_path=path)

    # the stem is the colour-summed kernel; deeper layers are copied as they are
    expected = imagenet.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(model.conv1.weight, expected)
    assert torch.equal(model.layer3[1].conv2.weight, imagenet.layer3[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, imagenet.bn1.running_var)
    assert model.fc.out_features == 4


def test_gray_image_gets_the_rgb_models_features(tmp_path, empty_hub):
    torch.manual_seed(2)
    imagenet = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "fake.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model("resnet18", pretrained=True, weights_path=path).eval()
    model.fc = imagenet.fc = nn.Identity()
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        # a one-channel image gives what the RGB model gave for the same gray in three channels
        assert torch.allclose(model(gray), imagenet(gray.expand(-1, 3, -1, -1)), atol=1e-5)


def test_pretrained_from_torchvision_cache(empty_hub):
    torch.manual_seed(4)
    imagenet = torchvision.models.resnet18(weights=None)
    target = empty_hub / "checkpoints" / "resnet18-f37072fd.pth"
    target.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), target)

    assert cached_weights_path("resnet18") == target
    model = build_model("resnet18", pretrained=True)
    assert torch.allclose(model.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))


def test_densenet_old_style_keys_are_accepted(tmp_path, empty_hub):
    torch.manual_seed(5)
    imagenet = torchvision.models.densenet121(weights=None)
    # torchvision's published file spells 'norm1' as 'norm.1'
    state = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
        for k, v in imagenet.state_dict().items()
    }
    assert any("norm.1" in k for k in state)
    path = tmp_path / "densenet.pth"
    torch.save(state, path)
    model = build_model("densenet121", pretrained=True, weights_path=path)
    conv0 = imagenet.features.conv0.weight.sum(1, keepdim=True)
    assert torch.allclose(model.features.conv0.weight, conv0)
    layer = model.features.denseblock1.denselayer1
    assert torch.equal(layer.norm1.weight, imagenet.features.denseblock1.denselayer1.norm1.weight)
    assert model.classifier.out_features == 4


@pytest.mark.parametrize(
    ("arch", "file_name"),
    [
        ("resnet18", "resnet18-f37072fd.pth"),
        ("resnet50", "resnet50-11ad3fa6.pth"),
        ("densenet121", "densenet121-a639ec97.pth"),
    ],
)
def test_missing_weights_say_which_file_goes_where(empty_hub, arch, file_name):
    with pytest.raises(UserError) as caught:
        build_model(arch, pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    assert str(empty_hub / "checkpoints" / file_name) in message


def test_missing_weights_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_model("resnet18", pretrained=True, weights_path=tmp_path / "absent.pth")


def test_weights_of_another_arch_are_a_user_error(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(UserError, match="not resnet18 ImageNet weights"):
        build_model("resnet18", pretrained=True, weights_path=path)


def test_unreadable_weights_file_is_a_user_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        build_model("resnet18", pretrained=True, weights_path=path)


def test_weights_path_is_ignored_without_pretrained(tmp_path):
    model = build_model("resnet18", weights_path=tmp_path / "absent.pth")
    assert model.conv1.in_channels == 1


def test_unknown_arch_is_a_user_error():
    with pytest.raises(UserError, match="vgg16"):
        build_model("vgg16")
