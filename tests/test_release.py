"""The authors' released teacher imported into psl computes what their network computes.

The release file cannot be downloaded here, so the reference is a statement of the
release's forward written out below from its description (DESIGN.md section 1):
torchaudio MelSpectrogram + AmplitudeToDB(top_db=120) fed straight to a torchvision-style
MobileNetV2, frequency mean, dropout + linear per frame, sigmoid, mean over frames. Its
random weights, saved as a state dict, are imported through psl and both are compared.
"""

from __future__ import annotations

import pytest
import torch
import torchaudio
from torch import nn

from psl.checkpoints import load_release_teacher
from psl.models.release import RELEASE_MODEL, ReleaseFormatError, psl_name

# Waveform-to-probability agreement; the network alone agrees to 1e-5 (see below).
END_TO_END = 1e-4
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu(cin, cout, kernel=3, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class Block(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        layers = [conv_bn_relu(cin, hidden, 1)] if t != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False)]
        self.conv = nn.Sequential(*layers, nn.BatchNorm2d(cout))
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.skip else self.conv(x)


class ReleaseStatement(nn.Module):
    """The release's MobileNetV2_DM forward, as described; 527 outputs by default."""

    def __init__(self, classes=527):
        super().__init__()
        self.front_end = nn.Sequential(
            torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=512, hop_length=160, n_mels=64),
            torchaudio.transforms.AmplitudeToDB(top_db=120),
        )
        layers, cin = [conv_bn_relu(1, 32, stride=2)], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(Block(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [conv_bn_relu(cin, 1280, 1), nn.AdaptiveAvgPool2d((1, None))]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(1280, classes))

    def forward(self, wave):
        x = self.features(self.front_end(wave).unsqueeze(1))  # [B, 1280, 1, T']
        frames = torch.sigmoid(self.classifier(x.squeeze(2).transpose(1, 2)))
        return frames.mean(1), frames


def random_release(classes=527, seed=0) -> ReleaseStatement:
    """Random weights, and batch-norm statistics of real activations, so outputs spread."""
    torch.manual_seed(seed)
    net = ReleaseStatement(classes)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0, 0.2)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)  # the release's own init of its linear layer
            nn.init.normal_(m.bias, 0, 0.5)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 16000 * 3) * 0.1)
    return net.eval()


def noise(seconds: float, generator: torch.Generator) -> torch.Tensor:
    n = int(seconds * 16000)
    level = 10 ** torch.empty(1).uniform_(-2.5, -0.5, generator=generator)
    return (torch.randn(n, generator=generator) * level).clamp(-1, 1)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    net = random_release()
    path = tmp_path_factory.mktemp("release") / "mobilenetv2_mAP40_53.pt"
    torch.save({"model": net.state_dict()}, path)
    return net, path


def test_imported_network_matches_the_release_network(release):
    """Given the release's own log-mel input, psl's network gives the release's frames."""
    net, path = release
    model = load_release_teacher(path)
    assert model.cfg == RELEASE_MODEL and model.norm is None
    generator = torch.Generator().manual_seed(1)
    for seconds in (1.0, 2.0, 3.37, 10.0):
        wave = noise(seconds, generator)[None]
        with torch.no_grad():
            spec = net.front_end(wave).unsqueeze(1).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(model.backbone(spec).frames, net(wave)[1], rtol=0, atol=1e-5)


def test_imported_teacher_matches_the_release_end_to_end(release):
    """Waveform in, probabilities out. The front ends differ only in the mel filterbank:
    torchaudio builds it in float32 (weights near the triangles' edges off by up to 0.2%),
    psl's op in float64 (2e-6 from an all-float64 computation). That moves probabilities
    by up to ~5e-5 on these weights, while two different clips' scores differ by ~0.1."""
    net, path = release
    model = load_release_teacher(path)
    generator = torch.Generator().manual_seed(1)
    for seconds in (1.0, 2.0, 3.37, 10.0):  # one clip a batch: the release floors top_db per batch
        wave = noise(seconds, generator)[None]
        with torch.no_grad():
            clip_ref, frames_ref = net(wave)
            out = model(wave, torch.tensor([wave.shape[1]]))
            other_clip = net(noise(seconds, generator)[None])[0]
        assert (other_clip - clip_ref).abs().max() > 0.02  # the outputs do depend on the audio
        torch.testing.assert_close(out.frames, frames_ref, rtol=0, atol=END_TO_END)
        torch.testing.assert_close(out.clip, clip_ref, rtol=0, atol=END_TO_END)


def test_loud_and_quiet_clips_hit_the_120_db_floor_as_in_the_release(release):
    net, path = release
    model = load_release_teacher(path)
    generator = torch.Generator().manual_seed(2)
    t = torch.arange(32000) / 16000
    wave = 0.9 * torch.sin(2 * torch.pi * 1000 * t) + 0.001 * torch.randn(32000, generator=generator)
    wave[8000:24000] = 0  # a second of digital silence: far below a loud tone's max - 120 dB
    with torch.no_grad():
        ref = net.front_end(wave[None])
        spec, _ = model.spectrogram(wave[None], None)
    floored = ref == ref.max() - 120
    assert floored.sum() > 1000  # the silent second and the tone's quiet bands
    torch.testing.assert_close(spec[floored], torch.full_like(spec[floored], float(spec.max()) - 120))
    torch.testing.assert_close(spec, ref, rtol=1e-3, atol=1e-2)  # the filterbank's float32 rounding
    with torch.no_grad():
        torch.testing.assert_close(model(wave[None]).clip, net(wave[None])[0], rtol=0, atol=END_TO_END)


def test_release_names_map_onto_psl_names():
    lengths = {1: 3, 2: 4}
    assert psl_name("features.1.conv.0.0.weight", lengths) == "backbone.features.1.block.0.0.weight"
    assert psl_name("features.1.conv.1.weight", lengths) == "backbone.features.1.block.1.0.weight"
    assert psl_name("features.1.conv.2.running_var", lengths) == "backbone.features.1.block.1.1.running_var"
    assert psl_name("features.2.conv.2.weight", lengths) == "backbone.features.2.block.2.0.weight"
    assert psl_name("features.2.conv.3.bias", lengths) == "backbone.features.2.block.2.1.bias"
    assert psl_name("classifier.1.weight", lengths) == "backbone.classifier.weight"
    assert psl_name("front_end.0.mel_scale.fb", lengths) is None


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.pop("features.3.conv.1.0.weight"), "missing: backbone.features.3.block.1.0.weight"),
        (lambda s: s.update({"features.99.weight": torch.zeros(1)}), "unexpected: features.99.weight"),
        (lambda s: s.update({"features.18.0.weight": torch.zeros(1280, 320, 3, 3)}), "misshaped: features.18.0.weight"),
        (lambda s: s.update({"front_end.0.mel_scale.fb": torch.rand(257, 64)}), "front_end.0.mel_scale.fb"),
    ],
)
def test_a_file_that_is_not_the_release_is_refused_by_name(release, tmp_path, damage, message):
    state = dict(release[0].state_dict())
    damage(state)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ReleaseFormatError, match=message.replace("(", r"\(")) as error:
        load_release_teacher(path)
    assert str(path) in str(error.value)


def test_a_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": nn.Linear(2, 2)}, path)  # a pickled module, not a state dict
    with pytest.raises(ReleaseFormatError, match="refused"):
        load_release_teacher(path)
