import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ZOO_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """No test sees a real torch hub cache: VGG weights are either planted by the test or absent."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "torch_home"))
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (pytest-xdist runs one test per core instead)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_batch(n=2, size=64, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, channels, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, size // 4 : size // 2, size // 8 : size // 2] = 1
    mask[-1, :, size // 2 : 7 * size // 8, size // 3 : 3 * size // 4] = 1
    return image, mask
