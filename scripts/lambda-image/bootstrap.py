"""/var/runtime/bootstrap.py of the stand-in Lambda Python image (scripts/lambda-image).

What Lambda's Python runtime does at start-up, in short: put the function's code and
its layers first on sys.path, in Lambda's documented order, then hand over to the
runtime interface client (awslambdaric), which polls the Runtime API
(AWS_LAMBDA_RUNTIME_API, served here by aws-lambda-rie) and calls the handler that
_HANDLER names.
"""

import os
import sys


def lambda_sys_path(current: list[str]) -> list[str]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    first = [
        task_root,
        f"/opt/python/lib/python{version}/site-packages",
        "/opt/python",
        f"{sys.prefix}/lib/python{version}/site-packages",
        runtime_dir,
    ]
    here = os.path.dirname(os.path.abspath(__file__))
    return first + [p for p in current if p not in first and p != here]


def main() -> None:
    sys.path[:] = lambda_sys_path(sys.path)
    handler = os.environ.get("_HANDLER") or (sys.argv[1] if len(sys.argv) > 1 else "")
    from awslambdaric import __main__ as ric

    ric.main([sys.argv[0], handler])


if __name__ == "__main__":
    main()
