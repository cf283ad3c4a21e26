"""The command-line tools on bad input: one line on stderr, exit status 2, no traceback, nothing overwritten;
and their console scripts on PATH in the dev environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _train_helpers import write_object_set, write_toy_dataset  # noqa: E402
from posecnn_core.checkpoint import CheckpointMeta, save_checkpoint  # noqa: E402
from posecnn_core.inspect_checkpoint import main as inspect_main  # noqa: E402
from posecnn_core.network import PoseCNN  # noqa: E402
from posecnn_core.train.cli import main as train_main  # noqa: E402
from posecnn_core.train.export import main as export_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(("error: ", "posecnn-inspect: error: ")), err
    return lines[-1]


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "latest.pt"
    return save_checkpoint(path, net, CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.125,
                                                     class_names=["__background__", "a", "b"]),
                           train_state={"iteration": 7})


def test_export_never_overwrites_and_reports_bad_input(training_checkpoint, tmp_path, capsys) -> None:
    dst = tmp_path / "deploy.pt"
    assert export_main([str(training_checkpoint), str(dst)]) == 0
    capsys.readouterr()
    exported = dst.read_bytes()
    assert export_main([str(training_checkpoint), str(dst), "--float32"]) == 2
    line = _one_error_line(capsys)
    assert f"{dst} already exists" in line and "--overwrite" in line and dst.read_bytes() == exported
    assert export_main([str(training_checkpoint), str(dst), "--float32", "--overwrite"]) == 0
    assert dst.read_bytes() != exported  # float32 now

    nan_net = PoseCNN(3, fc_dim=16, trunk_width=0.125)
    with torch.no_grad():
        nan_net.fc10.weight.fill_(float("nan"))
    diverged = save_checkpoint(tmp_path / "diverged.pt", nan_net, CheckpointMeta(num_classes=3, fc_dim=16,
                                                                                 trunk_width=0.125))
    (tmp_path / "folder").mkdir()
    cases = {
        (str(tmp_path / "missing.pt"), str(tmp_path / "x.pt")): "checkpoint file does not exist",
        (str(tmp_path / "folder"), str(tmp_path / "x.pt")): "is a directory, not a checkpoint file",
        (str(diverged), str(tmp_path / "x.pt")): "NaN or infinite weights in fc10.weight",
        (str(training_checkpoint), str(tmp_path / "folder")): "is a directory, not a file",
        (str(training_checkpoint), str(dst / "sub.pt")): "cannot be created",
    }
    for (src, out), expected in cases.items():
        assert export_main([src, out]) == 2, (src, out)
        assert expected in _one_error_line(capsys)
    assert not (tmp_path / "x.pt").exists() and dst.is_file()


def test_export_averages_several_checkpoints(training_checkpoint, tmp_path, capsys) -> None:
    """Several sources: the element-wise mean of their weights, the last one's metadata plus where it came from; a
    source of another network is an error naming it, and nothing is written."""
    from posecnn_core.checkpoint import model_from_checkpoint, read_state_dict

    meta = CheckpointMeta(num_classes=3, fc_dim=16, trunk_width=0.125, class_names=["__background__", "a", "b"])
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "later.pt", PoseCNN(3, fc_dim=16, trunk_width=0.125), meta,
                            train_state={"iteration": 9})
    dst = tmp_path / "mean.pt"
    assert export_main([str(training_checkpoint), str(other), str(dst), "--float32"]) == 0
    capsys.readouterr()
    mean, mean_meta = model_from_checkpoint(dst)
    a, _ = model_from_checkpoint(training_checkpoint)
    b, _ = model_from_checkpoint(other)
    for key, value in mean.state_dict().items():
        expected = (a.state_dict()[key].double() + b.state_dict()[key].double()) / 2
        assert torch.allclose(value.double(), expected, atol=1e-7), key
    assert not torch.equal(a.state_dict()["fc10.weight"], b.state_dict()["fc10.weight"])  # not vacuous
    assert mean_meta.extra["averaged_from"] == ["latest.pt", "later.pt"]
    assert mean_meta.extra["averaged_iterations"] == [7, 9]
    assert read_state_dict(dst)[1].class_names == ["__background__", "a", "b"]

    wider = save_checkpoint(tmp_path / "wider.pt", PoseCNN(3, fc_dim=32, trunk_width=0.125),
                            CheckpointMeta(num_classes=3, fc_dim=32, trunk_width=0.125))
    assert export_main([str(training_checkpoint), str(wider), str(tmp_path / "y.pt")]) == 2
    line = _one_error_line(capsys)
    assert f"{wider}: a different network" in line and not (tmp_path / "y.pt").exists()


def test_train_errors_are_one_line(tmp_path, capsys) -> None:
    yaml_path = write_object_set(tmp_path)
    write_toy_dataset(tmp_path / "ds", frames=2, test_frames=0)
    base = [f"--set=objects={yaml_path}", "--set=vgg16_init=null", "--set=trunk_width=0.125", "--set=fc_dim=16",
            "--set=device=cpu", "--set=workers=0", "--set=progress=false", "--set=max_iters=1",
            "--set=batch_size=1"]
    assert train_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in _one_error_line(capsys)
    assert train_main(base + [f"--set=train_data=[{{root: {tmp_path / 'nowhere'}}}]",
                              f"--set=output_dir={tmp_path / 'run1'}"]) == 2
    assert "nowhere" in _one_error_line(capsys)
    afile = tmp_path / "a_file"
    afile.write_text("keep")
    assert train_main(base + [f"--set=train_data=[{{root: {tmp_path / 'ds'}}}]",
                              f"--set=output_dir={afile}"]) == 2
    assert str(afile) in _one_error_line(capsys) and afile.read_text() == "keep"
    corrupt = tmp_path / "latest.pt"
    corrupt.write_text("corrupt")  # 7 bytes of text: resuming says it is no checkpoint, not that it holds pickles
    assert train_main(base + [f"--set=train_data=[{{root: {tmp_path / 'ds'}}}]",
                              f"--set=output_dir={tmp_path / 'run2'}", f"--set=resume={corrupt}"]) == 2
    line = _one_error_line(capsys)
    assert f"{corrupt}: not a checkpoint: text file starting with 'corrupt'" in line and "pickled" not in line, line


def test_inspect_errors_are_one_line(tmp_path, capsys) -> None:
    for path, expected in (("/dev/null", "is a character device"), (str(tmp_path), "is a directory"),
                           (str(tmp_path / "nope.pth"), "does not exist")):
        assert inspect_main([path]) == 2
        assert expected in _one_error_line(capsys)


def test_console_scripts_are_on_path() -> None:
    """tools/setup_env.sh builds the package with colcon, which installs setup.cfg's console scripts into the
    venv's bin/ (CMakeLists.txt); `source tools/env.sh` puts it on PATH."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names = [line.split("=")[0].strip() for line in cfg["options.entry_points"]["console_scripts"].splitlines()
             if line.strip()]
    assert {"posecnn-train", "posecnn-eval", "posecnn-inspect"} <= set(names)
    if os.environ.get("POSECNN_REQUIRE_ROS") != "1" and not shutil.which(names[0]):
        pytest.skip("not in the dev environment (tools/setup_env.sh + source tools/env.sh)")
    for name in names:
        path = shutil.which(name)
        assert path, f"{name} is not on PATH"
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and f"usage: {name}" in out.stdout, out
