"""The suite's pytest configuration survives ROS's launch_testing pytest plugins of releases made before their
pytest 9 fix (they stop pytest >= 9 at start-up): setup.cfg disables them. Simulated with two installed plugins
that fail pytest's hook validation the way those do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _broken_launch_plugins(folder: Path) -> None:
    dist = folder / "fake_launch_testing-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-launch-testing\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\nlaunch_testing = fake_lt_hooks\n"
                                           "launch_ros = fake_ltr_hooks\n")
    # launch_testing's hook still takes the py.path argument `path`, which pytest 9 removed
    (folder / "fake_lt_hooks.py").write_text("def pytest_pycollect_makemodule(path, parent):\n    return None\n")
    # launch_testing_ros implements a hook that only launch_testing declares
    (folder / "fake_ltr_hooks.py").write_text(
        "def pytest_launch_collect_makemodule(path, parent, entrypoint):\n    return None\n")


def test_broken_launch_testing_plugins_do_not_stop_the_suite(tmp_path) -> None:
    plugins = tmp_path / "site"
    plugins.mkdir()
    _broken_launch_plugins(plugins)
    (tmp_path / "test_trivial.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                               str(ROOT / "setup.cfg"), "--rootdir", str(tmp_path), *extra,
                               str(tmp_path / "test_trivial.py")], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    ok = run()
    assert ok.returncode == 0 and "1 passed" in ok.stdout, ok.stdout + ok.stderr
    broken = run("-o", "addopts=")  # without setup.cfg's options the simulated plugins do stop pytest
    assert broken.returncode != 0 and "PluginValidationError" in broken.stdout + broken.stderr, broken
