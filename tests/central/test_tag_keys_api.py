"""``GET /v1/tag-keys`` over real HTTP on 127.0.0.1, on SQLite and PostgreSQL: only the
asking device's unit's active SUN tags, only their SDM keys, the tag policy (``auto``
and set), and the ``nyckelfri-central tag-keys`` and ``device add --unit`` commands
working on the same database as the running centre.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from central.cases.values import Principal
from central.cli import EXIT_DATA, main
from routine import sun
from sync.protocol import ProblemDetail, ProvisionKeys, TagKeysPage, TagPolicy
from tests.central.conftest import SteppingClock
from tests.central.test_sun_authority import (
    ADMIN,
    NORD,
    OTHER_PROVIDER,
    PI_1,
    PI_BARE,
    PI_SYD,
    PROVIDER,
    SYD,
    TAG_A,
    TAG_B,
    TAG_C,
    Centre,
    assert_no_master_key,
    centre_on,
    provision,
)

CLASSIC_TAG = "04111111111111"


@pytest.fixture
def centre(database_url: str, central_clock: SteppingClock) -> Iterator[Centre]:
    with centre_on(database_url, central_clock) as c:
        yield c


def page(c: Centre, device: str) -> TagKeysPage:
    return TagKeysPage.model_validate(c.get(device, "/v1/tag-keys"))


def cli(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--database", database_url, *args])


def database_of(c: Centre) -> str:
    url = c.store._engine.url
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=False)


def test_a_device_gets_the_sdm_keys_of_its_units_sun_tags_only(centre: Centre) -> None:
    answers: dict[str, ProvisionKeys] = {}
    for uid, client, who in ((TAG_A, "K-1", PROVIDER), (TAG_B, "K-4", PROVIDER),
                             (TAG_C, "K-2", OTHER_PROVIDER)):
        _, answers[uid], _ = provision(centre, uid, client, who=who)
    # A tag issued the old way (no SUN) and a SUN tag that was lost are not listed.
    centre.post(PROVIDER, "/v1/tags", {"uid": CLASSIC_TAG, "client_ref": "K-1",
                                       "provider_unit": NORD}, expect=201)
    centre.routine.tags.lost(TAG_B, Principal(PROVIDER, "provider", NORD))
    nord, syd, bare = page(centre, PI_1), page(centre, PI_SYD), page(centre, PI_BARE)
    assert [t.uid for t in nord.tags] == [TAG_A]
    assert [t.uid for t in syd.tags] == [TAG_C]
    assert bare.tags == []
    master = centre.masters()[1]
    for held in (*nord.tags, *syd.tags):
        keys = sun.sun_keys(sun.tag_key_set(master, bytes.fromhex(held.uid)))
        assert (held.key_version, held.meta_read, held.file_read) == (
            1, keys.meta_read.hex(), keys.file_read.hex())
    texts = centre.seen[-3:]  # the three tag-keys answers
    for answer in answers.values():
        for number in (sun.KEY_APP_MASTER, 3, 4):  # never the keys that change the tag
            assert not any(answer.keys[number] in text for text in texts)
    assert_no_master_key(centre)


def test_principals_are_refused_like_the_reference_data(centre: Centre) -> None:
    for who in (PROVIDER, ADMIN):
        response = centre.call("GET", who, "/v1/tag-keys", expect=403)
        problem = ProblemDetail.model_validate(response.json())
        assert problem.error == "forbidden" and "principal" in problem.detail
        assert "device add" in problem.advice


def test_auto_policy_follows_the_tags_the_deployment_has(centre: Centre) -> None:
    assert page(centre, PI_1).policy is TagPolicy.SIGNATURE  # no tags at all
    provision(centre, TAG_A)
    assert page(centre, PI_1).policy is TagPolicy.SUN_REQUIRED  # every active tag is SUN
    centre.post(PROVIDER, "/v1/tags", {"uid": CLASSIC_TAG, "client_ref": "K-1",
                                       "provider_unit": NORD}, expect=201)
    assert page(centre, PI_SYD).policy is TagPolicy.SIGNATURE  # the whole deployment's
    centre.routine.tags.lost(CLASSIC_TAG, Principal(PROVIDER, "provider", NORD))
    assert page(centre, PI_1).policy is TagPolicy.SUN_REQUIRED
    state = centre.routine.sun.set_policy("uid_only")
    assert (state.setting, state.effective, state.active_tags, state.sun_tags) == (
        "uid_only", TagPolicy.UID_ONLY, 1, 1)
    assert page(centre, PI_1).policy is TagPolicy.UID_ONLY
    centre.routine.sun.set_policy("auto")
    assert page(centre, PI_1).policy is TagPolicy.SUN_REQUIRED


def test_tag_keys_commands_work_on_the_running_centres_database(centre: Centre) -> None:
    database = database_of(centre)
    assert json.loads(cli(database, "tag-keys", "list", "--json").stdout) == {"versions": []}
    # The policy and the URL base, set by the CLI, are what the API answers.
    set_policy = cli(database, "tag-keys", "policy", "sun_required", "--json")
    assert set_policy.exit_code == 0, set_policy.output
    assert json.loads(set_policy.stdout)["effective"] == "sun_required"
    assert page(centre, PI_1).policy is TagPolicy.SUN_REQUIRED
    shown = cli(database, "tag-keys", "policy")
    assert "tag policy sun_required: agents are told sun_required" in shown.stdout
    assert cli(database, "tag-keys", "policy", "sometimes").exit_code == 2
    assert cli(database, "tag-keys", "url-base", "https://vard.example.se/t").exit_code == 0
    bad = cli(database, "tag-keys", "url-base", "https://vard.example.se/t?x=1")
    assert bad.exit_code == EXIT_DATA and "not usable" in bad.output
    chip, answer, _ = provision(centre, TAG_A)
    assert answer.url_base == "https://vard.example.se/t"
    # Rotation, and the versions with the tags that use them (never a key).
    rotated = cli(database, "tag-keys", "rotate")
    assert rotated.exit_code == 0 and "master key version 2 created" in rotated.stdout
    assert "1 active tag(s) keep an older version" in rotated.stdout
    listed = cli(database, "tag-keys", "list", "--json")
    versions = json.loads(listed.stdout)["versions"]
    assert [(v["version"], v["tags"], v["active_tags"], v["newest"]) for v in versions] == [
        (1, 1, 1, False), (2, 0, 0, True)]
    for key in centre.masters().values():
        assert key.hex() not in listed.stdout.lower()
    assert "(newest)" in cli(database, "tag-keys", "list").stdout
    _, again, _ = provision(centre, TAG_A, chip=chip)
    assert (again.key_version, again.current_key_version) == (2, 1)


def test_device_add_with_a_unit_gets_that_units_tags(centre: Centre) -> None:
    provision(centre, TAG_C, "K-2", who=OTHER_PROVIDER)
    added = cli(database_of(centre), "device", "add", "pi-syd-2", "--unit", SYD, "--json")
    assert added.exit_code == 0, added.output
    data: dict[str, Any] = json.loads(added.stdout)
    assert (data["role"], data["unit"]) == ("device", SYD)
    centre.tokens["pi-syd-2"] = data["token"]
    assert [t.uid for t in page(centre, "pi-syd-2").tags] == [TAG_C]
    assert {d.name: d.unit for d in centre.store.list_devices()}["pi-syd-2"] == SYD


def test_the_tag_keys_commands_have_help() -> None:
    runner = CliRunner()
    for command in ("rotate", "list", "policy", "url-base"):
        result = runner.invoke(main, ["tag-keys", command, "--help"])
        assert result.exit_code == 0 and len(result.output) > 80, command
