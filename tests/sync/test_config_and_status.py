"""Sync settings (file < env < command line) and what `agent status` shows of sync."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.cli import main
from agent.config import DEFAULT_SYNC_INTERVAL_S, ConfigError, load_config
from agent.store import Store
from tests.sync.conftest import add_events


def test_sync_settings_from_file_env_and_command_line(tmp_path):
    (tmp_path / "agent.toml").write_text(
        'centre_url = "http://127.0.0.1:8700/"\ntoken_file = "/nonexistent"\n'
        "sync_interval_s = 30\nsync_max_attempts = 3\n")
    cfg = load_config(overrides={"data_dir": tmp_path}, env={})
    assert cfg.centre_url == "http://127.0.0.1:8700" and cfg.sync_interval_s == 30
    assert cfg.sync_max_attempts == 3 and cfg.sync_configured
    env = {"NYCKELFRI_CENTRE_URL": "https://centre.example", "NYCKELFRI_TOKEN": "s3cret",
           "NYCKELFRI_SYNC_INTERVAL_S": "90"}
    cfg = load_config(overrides={"data_dir": tmp_path}, env=env)
    assert (cfg.centre_url, cfg.sync_token(), cfg.sync_interval_s) == (
        "https://centre.example", "s3cret", 90)
    assert "s3cret" not in repr(cfg)
    cfg = load_config(overrides={"data_dir": tmp_path, "centre_url": "http://other:1"}, env=env)
    assert cfg.centre_url == "http://other:1"


def test_defaults_do_not_sync(tmp_path):
    cfg = load_config(overrides={"data_dir": tmp_path}, env={})
    assert cfg.centre_url is None and not cfg.sync_configured
    assert cfg.sync_interval_s == DEFAULT_SYNC_INTERVAL_S


@pytest.mark.parametrize(
    ("env", "match"),
    [({"NYCKELFRI_CENTRE_URL": "centre.example:8700"}, "http:// or https://"),
     ({"NYCKELFRI_SYNC_INTERVAL_S": "0"}, "sync_interval_s"),
     ({"NYCKELFRI_SYNC_MAX_ATTEMPTS": "zero"}, "sync_max_attempts")],
)
def test_bad_sync_settings_are_named(tmp_path, env, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides={"data_dir": tmp_path}, env=env)


def test_token_file(tmp_path):
    token = tmp_path / "token"
    cfg = load_config(overrides={"data_dir": tmp_path},
                      env={"NYCKELFRI_TOKEN_FILE": str(token)})
    with pytest.raises(ConfigError, match="cannot read token_file"):
        cfg.sync_token()
    token.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        cfg.sync_token()
    token.write_text("abc\n")
    assert cfg.sync_token() == "abc"


def test_status_shows_rejected_events(tmp_path, clock):
    data = tmp_path / "data"
    with Store.in_dir(data, device_id="test-agent") as store:
        ids = add_events(store, clock, 3)
        store.mark_rejected(ids[0], "centre: not your event")
    runner = CliRunner()
    status = json.loads(runner.invoke(main, ["agent", "status", "--data-dir", str(data),
                                             "--json"], env={}).output)
    assert status["outbox"] == {"total": 3, "sent": 0, "pending": 2, "rejected": 1}
    assert status["rejected_events"][0]["rejected_reason"] == "centre: not your event"
    text = runner.invoke(main, ["agent", "status", "--data-dir", str(data)]).output
    assert "2 pending, 0 sent, 1 rejected by the centre" in text
    assert "centre: not your event" in text
