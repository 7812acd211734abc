"""The README's Hooks section: its SAM rule subscribes to what the events function publishes,
and passes cfn-lint. (Its signature check runs in every delivery test: conftest.readme_verifier.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from cfnlint.api import lint_file
from moto.events.models import EventPattern
from skyport.event_bus import DETAIL_TYPES, SOURCE, detail

from .conftest import ROOT, sample_event


def _rule_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"```yaml\n(  OnTagMoved:.*?)```", text, re.S).group(1)


def test_the_readme_hook_is_a_valid_sam_function(tmp_path: Path):
    (tmp_path / "on_tag_moved").mkdir()
    (tmp_path / "on_tag_moved" / "app.py").write_text("def handler(event, context):\n    return None\n")
    template = tmp_path / "template.yaml"
    header = "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\nResources:\n"
    template.write_text(header + _rule_snippet())
    problems = [f"{m.rule.id} {m.message}" for m in lint_file(template) if m.rule.id[0] in "EW"]
    assert problems == []


def test_the_readme_rule_matches_a_tag_moved_under_team_a_only():
    function = yaml.safe_load(_rule_snippet())["OnTagMoved"]
    pattern = function["Properties"]["Events"]["TagMoved"]["Properties"]["Pattern"]
    matcher = EventPattern(json.dumps(pattern), pattern)  # EventBridge's matching, as moto implements it

    def bus_event(event) -> dict:
        return {"source": SOURCE, "detail-type": DETAIL_TYPES[event.type], "detail": detail(event)}

    assert matcher.matches_event(bus_event(sample_event("04-tag-moved", repository="team-a/app")))
    assert not matcher.matches_event(bus_event(sample_event("04-tag-moved", repository="team-b/app")))
    assert not matcher.matches_event(bus_event(sample_event("03-tag-created", repository="team-a/app")))
