"""`skyport retention add|list|remove|preview|run` on a registry's table: the dry run
changes nothing (a storage snapshot before and after), run deletes what preview showed,
and bad input gets a clear error with nothing stored."""

from __future__ import annotations

import json

import pytest
from cli_support import run_cli as run
from cli_support import table_flags
from skyport.registry import Registry

from .conftest import manifest_digests, pull, push


@pytest.fixture
def target(registry: Registry) -> list[str]:
    return table_flags(registry.settings)


@pytest.mark.parametrize("action", [[], ["add"], ["list"], ["remove"], ["preview"], ["run"]])
def test_every_retention_command_has_help(capsys, action):
    code, out, _ = run(capsys, "retention", *action, "--help")
    assert code == 0 and "usage: skyport retention" in out


def test_add_list_remove(capsys, target, registry):
    code, out, err = run(
        capsys, "retention", "add", "team/*", "--keep-last", "5", "--keep-pulled-within", "90d",
        "--keep-tags", "v*", "release-*", "--untagged-after", "1w", *target,
    )  # fmt: skip
    assert code == 0, err
    rule_id = out.split()[2]
    assert out.startswith(
        f"retention rule {rule_id} added: in team/*: keep the newest 5; keep what was pulled within "
        "90d; keep tags v*, release-*; untagged manifests go after 1w\n"
    )
    code, out, _ = run(capsys, "retention", "list", "--json", *target)
    (listed,) = json.loads(out)
    assert listed["id"] == rule_id and listed["keep_last"] == 5 and listed["keep_pulled_within"] == 90 * 86400
    assert listed["keep_tags"] == ["v*", "release-*"] and listed["untagged_after"] == 7 * 86400
    code, out, err = run(capsys, "retention", "add", "team/*", "--keep-last", "5", "--keep-pulled-within",
                         "90d", "--keep-tags", "release-*,v*", "--untagged-after", "7d", *target)  # fmt: skip
    assert code == 1 and f"rule {rule_id} is the same" in err
    code, out, _ = run(capsys, "retention", "remove", rule_id, *target)
    assert code == 0 and out.startswith(f"retention rule {rule_id} removed")
    code, _, err = run(capsys, "retention", "remove", rule_id, *target)
    assert code == 1 and f"no rule {rule_id}" in err
    assert registry.retention.list_rules() == []


def test_preview_changes_nothing_and_run_deletes_what_it_showed(
    capsys, target, registry, storage, app_client
):
    old = push(app_client, "team/app", "v1")
    pulled = push(app_client, "team/app", "v2")
    newest = push(app_client, "team/app", "v3")
    pull(app_client, "team/app", "v2")
    assert (
        run(
            capsys, "retention", "add", "team/app", "--keep-last", "1", "--keep-pulled-within", "30d", *target
        )[0]
        == 0
    )
    before = storage.snapshot()
    code, out, err = run(capsys, "retention", "preview", "--as-of", "+2h", *target)
    assert code == 0, err
    assert storage.snapshot() == before
    assert "(dry run: nothing changed)" in out and "team/app (rules rt-" in out
    assert f"  delete {old} [v1]" in out and "not among the newest 1 (#3); not pulled within 30d" in out
    assert f"  keep   {pulled} [v2]" in out and "pulled within 30d" in out
    assert f"  keep   {newest} [v3]" in out
    assert "to delete 1" in out
    code, out, _ = run(capsys, "retention", "preview", "other/*", "--json", "--as-of", "+2h", *target)
    assert code == 0 and json.loads(out)["repositories"] == []
    code, out, _ = run(capsys, "retention", "run", "--dry-run", "--as-of", "+2h", "--json", *target)
    assert code == 0 and json.loads(out)["totals"]["to_delete"] == 1 and storage.snapshot() == before
    code, out, err = run(capsys, "retention", "run", "--as-of", "+2h", *target)
    assert code == 0, err
    assert "-> deleted" in out and "deleted 1" in out
    assert manifest_digests(registry, "team/app") == {pulled, newest}


@pytest.mark.parametrize(
    "options, message",
    [
        (["--keep-last", "0"], "keep-last must be a number from 1 to 10000, not 0"),
        (["--keep-last", "-3"], "keep-last must be a number from 1 to 10000"),
        (["--keep-last", "10001"], "not 10001"),
        (["--keep-last", "9" * 40], "keep-last must be a number"),
        (["--keep-last", "١٢"], "keep-last must be a number"),
        (["--keep-last", "５"], "keep-last must be a number"),
        (["--keep-pushed-within", "30"], "keep-pushed-within must be a number and a unit"),
        (["--keep-pushed-within", "30m"], "h (hours), d (days) or w (weeks)"),
        (["--keep-pulled-within", "٣٠d"], "keep-pulled-within must be a number and a unit"),
        (["--keep-pulled-within", "0d"], "must be from 1h to 3650d"),
        (["--untagged-after", "999999w"], "must be from 1h to 3650d"),
        (["--untagged-after=-1d"], "untagged-after must be a number and a unit"),
        (["--keep-tags", "v 1"], "invalid tag pattern"),
        (["--keep-last", "3", "--keep-tags", ""], "empty tag pattern"),
        (["--keep-last", "3", "--keep-tags", "v*,,rc"], "empty tag pattern"),
        (["--keep-tags", "x" * 1000], "invalid tag pattern"),
        (["--keep-tags", *(f"t{i}" for i in range(21))], "at most 20 tag patterns"),
        ([], "a rule needs at least one of"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(capsys, target, storage, options, message):
    before = storage.snapshot()
    code, out, err = run(capsys, "retention", "add", "team/*", *options, *target)
    assert code == 1 and out == "" and message in err, err
    assert "Traceback" not in err and storage.snapshot() == before


@pytest.mark.parametrize("pattern", ["", "a" * 1000, "Team/App", "team//app", "**"])
def test_bad_patterns_are_refused(capsys, target, storage, pattern):
    before = storage.snapshot()
    code, _, err = run(capsys, "retention", "add", pattern, "--keep-last", "3", *target)
    assert code == 1 and ("repository pattern" in err), err
    if pattern:  # preview's optional pattern too
        code, _, err = run(capsys, "retention", "preview", pattern, *target)
        assert code == 1 and "repository pattern" in err, err
    assert storage.snapshot() == before


@pytest.mark.parametrize("value", ["tomorrow", "+30", "+٣d", "2027-13-01", "+30m"])
def test_a_bad_as_of_is_refused(capsys, target, value):
    code, out, err = run(capsys, "retention", "preview", "--as-of", value, *target)
    assert code == 1 and "--as-of" in err and out == "", err


def test_remove_refuses_a_malformed_id(capsys, target):
    code, _, err = run(capsys, "retention", "remove", "rt-" + "x" * 500, *target)
    assert code == 1 and "rule ids look like rt-0123abcd" in err and len(err) < 200
