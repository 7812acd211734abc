"""`skyport cache add|list|remove`: pull-through cache rules (skyport/pull_through/rules.py),
on the `make run` registry (``.skyport/serve.json``), ``--table``, or a deployed stack
(``--stack``), found as the admin commands find it (admin.py).

Credentials: ``--username U --password-env VAR``. Against a stack, the CLI reads VAR and
puts the password in Secrets Manager (``settings.hook_secrets + "cache/<prefix>"``), which
the deployed functions read. Locally, the rule keeps VAR's NAME and the server reads the
variable when it calls upstream (start `make run` with it set). The password is never
stored in the table, printed, or logged.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import admin


def _within(registry) -> str:
    seconds = registry.settings.cache_rules_seconds
    return f"running registries apply it within {seconds} s (SKYPORT_CACHE_RULES_SECONDS)"


def add(args: argparse.Namespace) -> None:
    from skyport.pull_through import CacheRuleInvalid
    from skyport.pull_through.upstream import probe_upstream

    if (args.username is None) != (args.password_env is None):
        raise CacheRuleInvalid("--username and --password-env VAR go together")
    password = None
    if args.password_env and args.stack:
        # Deployed: the functions cannot read this shell's environment; Secrets Manager it is.
        password = os.environ.get(args.password_env)
        if password is None:
            raise CacheRuleInvalid(f"--password-env {args.password_env}: that variable is not set")
    registry = admin.target_registry(args)
    rule = registry.cache_rules.add(
        args.prefix,
        args.url,
        username=args.username,
        password_env=args.password_env,
        password=password,
        insecure=args.insecure,
        mirror=args.mirror,
        probe=None if args.no_probe else probe_upstream,
    )
    print(f"cache rule added: {rule.describe()}")
    if rule.password_env:
        print(f"the server reads the password from ${rule.password_env} when it calls upstream")
    print(_within(registry))


def list_(args: argparse.Namespace) -> None:
    rules = admin.target_registry(args).cache_rules.list_rules()
    if args.json:
        print(json.dumps([rule.fields() for rule in rules], indent=2))
        return
    for rule in rules:
        login = rule.username or "-"
        flags = ",".join(word for word, on in (("insecure", rule.insecure), ("mirror", rule.mirror)) if on)
        print(f"{rule.prefix}\t{rule.upstream}\tuser: {login}\t{flags or '-'}")


def remove(args: argparse.Namespace) -> None:
    registry = admin.target_registry(args)
    rule = registry.cache_rules.remove(args.prefix)
    print(f"cache rule for {rule.prefix} removed ({rule.upstream}); {_within(registry)}")
    print("what it cached stays, as ordinary repositories (lifecycle rules and deletes apply)")


def add_command(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache",
        help="pull-through cache rules: add, list, remove",
        description="Pull-through cache: repositories under PREFIX are pulled from an upstream "
        "registry on a miss and kept. README, Pull-through cache.",
    )
    sub = cache.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "add",
        help="pull PREFIX/<name> through from an upstream registry",
        description="Add a rule: PREFIX/<name> is <name> of the upstream registry at URL "
        "(Docker Hub: PREFIX/alpine is library/alpine).",
    )
    p.add_argument("prefix", help="repository-name prefix: hub, ghcr, mirrors/quay")
    p.add_argument("url", help="the upstream's base URL: https://ghcr.io, docker.io, http://127.0.0.1:5000")
    p.add_argument("--username", help="the upstream login's username (with --password-env)")
    p.add_argument(
        "--password-env",
        metavar="VAR",
        help="the environment variable holding the password: read now and put in Secrets Manager "
        "with --stack; locally, the server reads it when it calls upstream",
    )
    p.add_argument("--insecure", action="store_true", help="allow http://, or https without verifying TLS")
    p.add_argument(
        "--mirror",
        action="store_true",
        help="also answer unprefixed names (dockerd registry-mirrors: library/alpine) from this rule; "
        "at most one rule",
    )
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="store the rule without first asking the upstream GET /v2/ from here (an upstream "
        "only the registry's own network reaches)",
    )
    admin.target_options(p)
    p.set_defaults(run=add)
    p = sub.add_parser("list", help="list the rules", description="List the pull-through cache rules.")
    p.add_argument("--json", action="store_true")
    admin.target_options(p)
    p.set_defaults(run=list_)
    p = sub.add_parser(
        "remove", help="remove a rule", description="Remove the rule of PREFIX (cached content stays)."
    )
    p.add_argument("prefix")
    admin.target_options(p)
    p.set_defaults(run=remove)


def run(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError
    from skyport.pull_through import CacheRuleInvalid, CacheRuleUnknown
    from skyport.storage.ports import StorageUnavailable

    try:
        args.run(args)
    except (CacheRuleInvalid, CacheRuleUnknown, admin.TargetError) as error:
        print(f"skyport cache {args.action}: {error}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, StorageUnavailable) as error:
        print(f"skyport cache {args.action}: AWS: {error}", file=sys.stderr)
        return 1
    return 0
