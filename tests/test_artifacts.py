import numpy as np
import torch

from ensui.engine import artifacts


def test_array_round_trip_and_truncation_detected(tmp_path):
    path = tmp_path / "a.npy"
    data = np.arange(1000, dtype=np.float16).reshape(100, 10)
    artifacts.save_array(data, path)
    assert np.array_equal(artifacts.load_array(path), data)
    path.write_bytes(path.read_bytes()[:-7])  # truncated by a crash or a full disk
    assert not artifacts.is_intact(path) and artifacts.load_array(path) is None


def test_same_size_corruption_detected(tmp_path):
    path = tmp_path / "a.npy"
    artifacts.save_array(np.zeros(64, dtype=np.float32), path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert artifacts.load_array(path) is None


def test_missing_sidecar_means_absent(tmp_path):
    path = tmp_path / "s.pt"
    artifacts.save_state({"w": torch.ones(3)}, path)
    assert torch.equal(artifacts.load_state(path)["w"], torch.ones(3))
    (tmp_path / "s.pt.sha256").unlink()
    assert artifacts.load_state(path) is None


def test_no_temporary_files_left(tmp_path):
    artifacts.save_array(np.ones(3), tmp_path / "x.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.npy.sha256"]
