"""The CLI contract: train → eval → sample on the smoke preset, and one clear message + exit 2 for each
bad input."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from aigc_jax import cli, systems


def _smoke_train(workdir, *overrides):
    return ["train", "gpt_shakespeare", "--preset", "smoke", "--workdir", str(workdir), *overrides]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli") / "gpt"
    assert cli.main(_smoke_train(workdir)) == 0
    return workdir


def test_train_writes_checkpoints_metrics_and_samples(trained):
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["10", "20"]
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert {"loss", "grad_norm", "learning_rate", "step_time", "items_per_second"} <= set(train[-1])
    assert list((trained / "tensorboard").iterdir())
    assert (trained / "samples" / "step_0000020.txt").read_text()
    assert json.loads((trained / "eval.json").read_text())["step"] == 20


def test_eval_prints_and_writes_metrics(trained, capsys):
    assert cli.main(["eval", "--workdir", str(trained)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 20 and printed["loss"] > 0
    assert json.loads((trained / "eval.json").read_text()) == printed


def test_sample_takes_a_prompt_and_is_deterministic(trained, capsys):
    args = [
        "sample",
        "--workdir",
        str(trained),
        "--seed",
        "4",
        "--num",
        "2",
        "--prompt",
        "Ham.",
        "--num-tokens",
        "25",
    ]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    assert capsys.readouterr().out == first
    assert first.count("Ham.") >= 2


def test_train_again_resumes(trained, capsys, tmp_path):
    again = shutil.copytree(trained, tmp_path / "again")  # the other tests read `trained` at step 20
    assert cli.main(_smoke_train(again, "--config.train.num_steps=25")) == 0
    assert "resuming from step 20" in capsys.readouterr().out
    assert "25" in [p.name for p in (again / "checkpoints").iterdir()]
    assert json.loads((again / "config.json").read_text())["train"]["num_steps"] == 25


def _error(capsys, args):
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_an_experiment_script_reports_a_bad_key_in_one_line(tmp_path):
    script = pathlib.Path(__file__).parents[1] / "experiments" / "unet_fashion_scenes.py"
    command = [sys.executable, str(script), "--preset", "smoke", "--workdir", str(tmp_path / "run")]
    done = subprocess.run(
        [*command, "--config.train.nope=1"],
        capture_output=True,
        text=True,
        env=os.environ | {"JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 2
    assert "error: unknown config key --config.train.nope" in done.stderr and "Traceback" not in done.stderr


def test_unknown_config_key(capsys, tmp_path):
    err = _error(capsys, _smoke_train(tmp_path, "--config.train.num_step=3"))
    assert "--config.train.num_steps" in err


def test_unknown_system_and_preset(capsys, tmp_path):
    assert "aigc-jax list" in _error(capsys, ["train", "gtp_shakespeare", "--workdir", str(tmp_path)])
    assert "smoke" in _error(
        capsys, ["train", "gpt_shakespeare", "--preset", "tiny", "--workdir", str(tmp_path)]
    )


def test_missing_data_set(capsys, tmp_path):
    assert "shakespeare" in _error(capsys, _smoke_train(tmp_path, "--config.data.name=no_such_data"))


def test_offline_catalogue_data_set_names_the_embedded_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_JAX_OFFLINE", "1")
    err = _error(capsys, _smoke_train(tmp_path, "--config.data.name=tiny_shakespeare"))
    assert "--config.data.name=shakespeare" in err


def test_workdir_of_another_system(capsys, trained, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"name": "dcgan_fashion"}))
    assert "holds a dcgan_fashion run" in _error(capsys, _smoke_train(other))


def test_corrupt_checkpoint_is_reported_and_kept(capsys, trained, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(trained, damaged)
    latest = max((damaged / "checkpoints").iterdir(), key=lambda p: int(p.name))
    for path in latest.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "state" in str(path):
            path.write_bytes(b"garbage")
    err = _error(capsys, ["eval", "--workdir", str(damaged)])
    assert "cannot restore the checkpoint" in err and "move that step folder away" in err
    assert latest.exists()


def test_a_truncated_checkpoint_manifest_is_reported_in_one_line(trained, tmp_path):
    # in a process of its own: pytest's unraisable-exception hook would hide the noise this checks for
    damaged = shutil.copytree(trained, tmp_path / "damaged")
    latest = max((damaged / "checkpoints").iterdir(), key=lambda p: int(p.name))
    (latest / "state" / "manifest.ocdbt").write_bytes(b"0123456789")
    command = [sys.executable, "-m", "aigc_jax.cli", "eval", "--workdir", str(damaged)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: cannot restore the checkpoint"), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr  # no stray tracebacks or asyncio errors


def test_a_train_that_cannot_restore_keeps_the_config_of_the_checkpoints(capsys, trained, tmp_path):
    other = shutil.copytree(trained, tmp_path / "other")
    recorded = (other / "config.json").read_text()
    err = _error(capsys, _smoke_train(other, "--config.model.embed_dim=48"))
    assert "cannot restore the checkpoint" in err and "it was trained with another model shape" in err
    assert "params/h_0/attn/proj_bias is (32,) there, (48,) here" in err  # names the weights that differ
    assert (other / "config.json").read_text() == recorded  # eval and sample still restore
    assert cli.main(["eval", "--workdir", str(other)]) == 0


@pytest.mark.parametrize(
    "setting", ["keep_checkpoints=0", "log_every=0", "checkpoint_every=-1", "batch_size=0"]
)
def test_loop_settings_below_one_are_refused_before_any_checkpoint_is_touched(
    capsys, trained, tmp_path, setting
):
    other = shutil.copytree(trained, tmp_path / "other")
    err = _error(capsys, _smoke_train(other, f"--config.train.{setting}"))
    assert f"config.train.{setting.split('=')[0]} must be at least 1" in err
    assert sorted(p.name for p in (other / "checkpoints").iterdir()) == ["10", "20"]


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("cnn_fashion", "--config.model.arch=vgg", "unknown config.model.arch 'vgg'"),
        ("cnn_fashion", "--config.model.stage_features=(8,)", "need one entry per stage each"),
        ("unet_fashion_scenes", "--config.data.name=digits", "gives no 'mask' for its images"),
        ("transformer_g2p", "--config.data.name=chitchat", "has no pronunciations"),
        ("gpt_shakespeare", "--config.model.embed_dim=33", "must be a multiple of config.model.num_heads"),
        ("gpt_shakespeare", "--config.model.dtype=bf16", "config.model.dtype 'bf16' is not one of"),
        ("gpt_shakespeare", "--config.optim.accumulation_steps=0", "accumulation_steps must be at least 1"),
        ("cnn_fashion", "--config.model.dropout=1.5", "config.model.dropout must be in [0, 1), not 1.5"),
        ("cnn_fashion", "--config.augment.erase_probability=-0.1", "erase_probability must be in [0, 1]"),
        ("cnn_fashion", "--config.data.eval_split=nope", "has no split 'nope'"),
        ("gpt_shakespeare", "--config.model.max_len=0", "set --config.model.max_len to 1 or more"),
    ],
)
def test_bad_config_values_are_one_line_errors_and_write_nothing(capsys, tmp_path, name, override, message):
    workdir = tmp_path / "new"
    err = _error(capsys, ["train", name, "--preset", "smoke", "--workdir", str(workdir), override])
    assert message in err
    assert not (workdir / "config.json").exists()


def test_sample_options_take_the_type_of_their_defaults(capsys, trained):
    args = ["sample", "--workdir", str(trained), "--num-tokens", "5"]
    assert cli.main([*args, "--prompt", "42"]) == 0  # a number-like prompt stays text
    assert capsys.readouterr().out.count("42") >= 1
    assert "--temperature='hot' is not a valid float" in _error(capsys, [*args, "--temperature", "hot"])
    assert "--num-tokens must be 0 or more, not -5" in _error(capsys, [*args[:-2], "--num-tokens", "-5"])
    assert "sample takes no --bogus-option; its options: --num," in _error(
        capsys, [*args, "--bogus-option", "1"]
    )


def test_chat_decoding_options_are_checked_before_loading(capsys, tmp_path):
    chat = ["chat", "--workdir", str(tmp_path)]
    assert "--top-p is a probability mass in (0, 1], not 1.5" in _error(capsys, [*chat, "--top-p", "1.5"])
    assert "--beam must be 0 or more, not -1" in _error(capsys, [*chat, "--beam", "-1"])


def test_not_a_workdir(capsys, tmp_path):
    assert "not a training workdir" in _error(capsys, ["eval", "--workdir", str(tmp_path)])


def test_console_script_lists_systems():
    out = subprocess.run(
        [sys.executable, "-m", "aigc_jax.cli", "list"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"JAX_PLATFORMS": "cpu"},
    ).stdout
    header, *lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(systems.REGISTRY)
    status_column = header.index("status")  # every status starts under its header, however long
    for line, spec in zip(lines, systems.REGISTRY.values(), strict=True):
        assert line[status_column:].startswith(spec.status)


def test_train_splits_a_cpu_host_into_the_devices_its_config_asks_for(tmp_path):
    # a process of its own, without the tests' 8 simulated devices: JAX fixes its devices when first used
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = [sys.executable, "-m", "aigc_jax.cli", *_smoke_train(tmp_path / "run")]
    command += ["--config.mesh.cpu_devices=2", "--config.train.num_steps=2", "--config.train.eval_every=0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    assert "mesh {'data': 2, 'fsdp': 1, 'tensor': 1}" in done.stdout


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_save_a_checkpoint_and_exit_with_the_signal_code(tmp_path, signum, exit_code):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "aigc_jax.cli",
        "train",
        "gpt_shakespeare",
        "--preset",
        "smoke",
        "--workdir",
        str(workdir),
        "--config.train.num_steps=100000",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=100000",
        "--config.train.eval_every=0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == exit_code, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "run again to resume" in err
    assert [p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
