"""Configuration precedence: defaults < TOML file < environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config


def test_precedence(tmp_path: Path):
    (tmp_path / "agent.toml").write_text(
        'device_id = "from-file"\nreaders = ["usb"]\nrepeat_window_s = 10\nmax_visit_s = 100\n'
    )
    env = {"NYCKELFRI_REPEAT_WINDOW_S": "20", "NYCKELFRI_READER": "udp:127.0.0.1:1,tty:AMA0:pn532"}
    cfg = load_config(overrides={"data_dir": tmp_path, "device_id": None, "max_visit_s": 50},
                      env=env)
    assert cfg.device_id == "from-file"  # file, nothing above it
    assert cfg.repeat_window_s == 20  # env beats file
    assert cfg.readers == ("udp:127.0.0.1:1", "tty:AMA0:pn532")
    assert cfg.max_visit_s == 50  # command line beats all
    assert cfg.visit_settings().max_visit_s == 50


def test_data_dir_from_env_locates_the_file(tmp_path: Path):
    (tmp_path / "agent.toml").write_text('personal_staff_ref = "P-1"\nfeedback = false\n')
    cfg = load_config(env={"NYCKELFRI_DATA_DIR": str(tmp_path)})
    assert cfg.data_dir == tmp_path and cfg.personal_staff_ref == "P-1" and cfg.feedback is False


def test_broken_toml_names_the_file(tmp_path: Path):
    cfg = tmp_path / "x.toml"
    cfg.write_text("device_id = \n")
    with pytest.raises(ConfigError, match=r"x\.toml"):
        load_config(config_file=cfg, env={})


def test_missing_explicit_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "nope.toml", env={})


def test_tag_policy_from_file_and_env(tmp_path: Path):
    from sync.protocol import TagPolicy

    (tmp_path / "agent.toml").write_text('tag_policy = "sun_required"\n')
    cfg = load_config(env={"NYCKELFRI_DATA_DIR": str(tmp_path)})
    assert cfg.tag_policy is TagPolicy.SUN_REQUIRED
    assert cfg.visit_settings().tag_policy is TagPolicy.SUN_REQUIRED
    auto = load_config(env={"NYCKELFRI_DATA_DIR": str(tmp_path), "NYCKELFRI_TAG_POLICY": "auto"})
    assert auto.tag_policy is None
    with pytest.raises(ConfigError, match=r"tag_policy.*must be auto, sun_required"):
        load_config(env={"NYCKELFRI_DATA_DIR": str(tmp_path), "NYCKELFRI_TAG_POLICY": "strong"})


def test_constants_kept_apart_from_heavy_modules_agree_with_them():
    from agent.config import DEFAULT_SYNC_MAX_ATTEMPTS
    from sync.client import MAX_ATTEMPTS

    assert DEFAULT_SYNC_MAX_ATTEMPTS == MAX_ATTEMPTS


def test_reading_the_config_loads_neither_http_nor_the_simulators():
    import subprocess
    import sys

    code = ("import sys, agent.config; agent.config.load_config(env={}); "
            "print(sorted(m for m in ('httpx', 'pydantic', 'drivers.sim', 'bumble', 'fastapi', "
            "'sqlalchemy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
