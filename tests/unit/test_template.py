"""template.yaml passes cfn-lint, and keeps the properties the design relies on."""

from __future__ import annotations

from cfnlint.api import lint_file
from skyport_cli.stack import TEMPLATE_PATH, load_template


def test_cfn_lint_reports_no_errors_or_warnings():
    matches = lint_file(TEMPLATE_PATH)
    problems = [
        f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id[0] in "EW"
    ]
    assert problems == []


def test_upload_tails_expire():
    rules = load_template()["Resources"]["BlobBucket"]["Properties"]["LifecycleConfiguration"][
        "Rules"
    ]
    assert any(r.get("Prefix") == "uploads/" and "ExpirationInDays" in r for r in rules)
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)


def test_function_policy_is_scoped_to_the_bucket_and_table():
    fn = load_template()["Resources"]["ApiFunction"]["Properties"]
    resources = [s["Resource"] for p in fn["Policies"] for s in p["Statement"]]
    assert "*" not in resources
    assert all(isinstance(r, dict) for r in resources)  # GetAtt/Sub of our own resources
