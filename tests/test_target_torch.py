"""The target torch: where it is read from, what it means, and what the CLI does with it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fixture_cases import REWRITE

from apex2native.cli import main
from apex2native.options import Options
from apex2native.target import TorchVersion, parse_target, pin_for, version_floor

APEX_LOOP = (REWRITE / "initialize" / "literal_o1_training_loop.in.py").read_bytes()


def rewrite(*args: str):
    return CliRunner().invoke(main, ["rewrite", *args], catch_exceptions=False)


def pin(folder) -> TorchVersion | None:
    found = pin_for(str(folder))
    return found.version if found else None


# where a pin is read from ---------------------------------------------------------------


def test_pyproject_project_dependencies(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy", "torch>=2.1,<3"]\n'
    )
    assert pin(tmp_path) == (2, 1)


def test_pyproject_poetry_dependencies(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.poetry.dependencies]\npython = "^3.10"\ntorch = {version = "^1.13", optional = true}\n'
    )
    assert pin(tmp_path) == (1, 13)


def test_setup_cfg_install_requires(tmp_path):
    (tmp_path / "setup.cfg").write_text(
        "[options]\ninstall_requires =\n    numpy\n    torch ~= 2.2\n"
    )
    assert pin(tmp_path) == (2, 2)


def test_setup_py_is_read_not_run(tmp_path):
    (tmp_path / "setup.py").write_text(
        "from setuptools import setup\n"
        "REQUIRES = ['torch>=1.10']\n"
        f"open({str(tmp_path / 'ran')!r}, 'w').close()\n"
        "setup(name='x', install_requires=REQUIRES)\n"
    )
    assert pin(tmp_path) == (1, 10)
    assert not (tmp_path / "ran").exists()


def test_setup_py_with_computed_requirements_states_nothing(tmp_path):
    (tmp_path / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='x', install_requires=open('reqs').read().split())\n"
    )
    assert pin(tmp_path) is None


def test_requirements_files_with_comments_options_and_hashes(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "-r base.txt\n# torch>=0.4 was the old pin\n"
        "torch==2.0.1 --hash=sha256:abc  # cuda 11.8 build\n"
    )
    assert pin(tmp_path) == (2, 0)


def test_requirements_folder(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "train.txt").write_text("torch>=1.12.1\n")
    assert pin(tmp_path) == (1, 12)


def test_no_pin_anywhere_means_no_minimum(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["torch"]\n')
    (tmp_path / "requirements.txt").write_text("torch @ https://example.invalid/torch.whl\n")
    assert pin(tmp_path) is None


def test_the_nearest_folder_with_a_pin_wins(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=1.8\n")
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "pyproject.toml").write_text('[project]\ndependencies = ["torch>=2.2"]\n')
    assert pin(tmp_path / "pkg" / "sub") == (2, 2)
    assert pin(tmp_path) == (1, 8)


def test_a_pin_above_the_projects_root_is_another_projects(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch==1.4\n")
    (tmp_path / "project" / "src").mkdir(parents=True)
    (tmp_path / "project" / "pyproject.toml").write_text('[project]\ndependencies = ["torch"]\n')
    assert pin(tmp_path / "project" / "src") is None


def test_the_lowest_pin_of_one_folder_wins(tmp_path):
    (tmp_path / "setup.py").write_text("setup(install_requires=['torch>=1.13'])\n")
    (tmp_path / "requirements-dev.txt").write_text("torch==2.4.0\n")
    assert pin(tmp_path) == (1, 13)
    assert "setup.py: torch>=1.13" in pin_for(str(tmp_path)).source


# what a pin means -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "specifiers, floor",
    [
        (">=2.1", (2, 1)),
        (">2.2", (2, 2)),
        ("==2.1.*", (2, 1)),
        ("==2.3.0+cu121", (2, 3)),
        ("~=1.13", (1, 13)),
        (">=1.8,<2.0", (1, 8)),
        (">=1.8,!=2.0.0", (1, 8)),
        ("<2.3", (2, 2)),
        ("<2.0", (1, 13)),
        ("<=2.2.1", (2, 2)),
        ("<3", None),
        ("!=2.0.0", None),
        ("", None),
        ("=>2", None),
    ],
)
def test_version_floor(specifiers, floor):
    assert version_floor(specifiers) == floor


def test_target_torch_is_major_minor():
    assert parse_target("2.1") == (2, 1)
    assert parse_target("2.3.1") == (2, 3)
    assert str(parse_target("1.12")) == "1.12"
    with pytest.raises(ValueError, match="write X.Y"):
        parse_target("latest")
    with pytest.raises(ValueError, match="no native AMP"):
        parse_target("1.5")


def test_a_given_target_wins_over_the_pin(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=2.4\n")
    (tmp_path / "train.py").write_text("")
    assert Options().for_file(str(tmp_path / "train.py")).target_torch == (2, 4)
    given = Options(target_torch=TorchVersion(2, 1))
    assert given.for_file(str(tmp_path / "train.py")).target_torch == (2, 1)


# the command line -----------------------------------------------------------------------


def test_target_torch_option_spells_the_scaler_for_that_torch(tmp_path):
    (tmp_path / "train.py").write_bytes(APEX_LOOP)
    assert rewrite("--target-torch", "2.1", str(tmp_path)).exit_code == 0
    written = (tmp_path / "train.py").read_text()
    assert "scaler = torch.cuda.amp.GradScaler()" in written
    assert 'torch.amp.autocast("cuda", dtype=torch.float16)' in written


def test_the_projects_pin_spells_the_scaler_without_the_option(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=2.0\n")
    (tmp_path / "train.py").write_bytes(APEX_LOOP)
    assert rewrite(str(tmp_path)).exit_code == 0
    assert "scaler = torch.cuda.amp.GradScaler()" in (tmp_path / "train.py").read_text()


def test_without_a_pin_the_device_generic_spelling_is_written(tmp_path):
    (tmp_path / "train.py").write_bytes(APEX_LOOP)
    assert rewrite(str(tmp_path)).exit_code == 0
    assert 'scaler = torch.amp.GradScaler("cuda")' in (tmp_path / "train.py").read_text()


def test_a_pin_below_native_amp_is_warned_about_and_the_oldest_native_amp_is_targeted(tmp_path):
    (tmp_path / "requirements.txt").write_text("torch>=1.0\n")
    (tmp_path / "train.py").write_bytes(APEX_LOOP)
    result = rewrite(str(tmp_path))
    assert result.exit_code == 0
    assert "warning: " in result.stderr
    assert "requirements.txt: torch>=1.0: the project's minimum torch 1.0" in result.stderr
    assert "the rewrite targets torch 1.6" in result.stderr
    assert "torch.cuda.amp.autocast()" in (tmp_path / "train.py").read_text()


@pytest.mark.parametrize("value", ["1.5", "two"])
def test_an_impossible_target_is_a_usage_error(tmp_path, value):
    (tmp_path / "train.py").write_bytes(APEX_LOOP)
    result = rewrite("--target-torch", value, str(tmp_path))
    assert result.exit_code == 2
    assert "--target-torch" in result.stderr
    assert (tmp_path / "train.py").read_bytes() == APEX_LOOP


def test_fused_optimizer_swap_below_torch_2_says_zero_grad_no_longer_sets_none():
    """apex's fused optimizers set gradients to None in `zero_grad`; torch's do so only
    from 2.0: below it the report says a parameter without a gradient is still updated."""
    from apex2native.engine import rewrite_text

    text = (
        "import torch\nfrom apex.optimizers import FusedAdam\n\n\n"
        "def make(model):\n    return FusedAdam(model.parameters(), lr=1e-3)\n"
    )
    messages = {
        target: [f.message for f in rewrite_text(text, Options(target_torch=target))[1]]
        for target in (TorchVersion(1, 13), TorchVersion(2, 0))
    }
    assert any("set_to_none=True" in m for m in messages[TorchVersion(1, 13)])
    assert not any("set_to_none=True" in m for m in messages[TorchVersion(2, 0)])
