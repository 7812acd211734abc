"""The hooks pipeline on a laptop (issue 11): what Lambda's event source mappings do when
deployed, done by threads of `skyport serve` against moto, calling the same handlers.

Deployed (template.yaml)::

    table stream -> EventsFunction -> RegistryEventBus -> ReplicationRule -> ReplicationQueue
                                                                         -> ReplicationFunction
                                                       -> WebhookRule     -> WebhookQueue
                                                                         -> WebhookFunction

Here, ``stack.ensure_stack`` has created the bus, the queues and the rules in moto (moto's
EventBridge delivers a rule's matches to its SQS target, as AWS does), and ``LocalPipeline``
runs one thread per event source mapping, each found in the template's ``Events`` of a
function (never a copy of them):

- a DynamoDB event reads every shard of the table's stream from TRIM_HORIZON, drops the
  records its FilterCriteria do not match, and calls the function's handler with batches
  of at most BatchSize records in Lambda's shape; records the handler reports failed
  (``batchItemFailures``) are delivered again from the lowest, up to MaximumRetryAttempts,
  then described in the on-failure queue, as Lambda does;
- an SQS event receives up to BatchSize (at most 10) messages, calls the handler with them
  in Lambda's shape, and deletes those the handler did not report failed. A failed message
  comes back when its visibility ends (the handler's backoff sets it).

Each function's handler module is loaded afresh for the pipeline (as each Lambda function
has a sandbox of its own), with the function's environment from the template: references
to the local bus, queues, table and bucket resolved, and a value this shell sets for the
retry policy (SKYPORT_HOOK_*) or Powertools (POWERTOOLS_*) kept. The handlers' boto3
clients reach moto through AWS_ENDPOINT_URL_SQS, _EVENTBRIDGE and _SECRETS_MANAGER, set for
this process to the DynamoDB endpoint (``aws_endpoints``); the stream through the DynamoDB
endpoint. Every thread polls fast (the stream every 0.2 s, queues by 1 s long polls), so an
event reaches its hook within seconds.

Scheduled functions (issue 12) run here too: every function with a ``ScheduleV2`` or
``Schedule`` event (GcFunction, and any other scheduled job added to the template, with
no change here) gets a thread that invokes its handler with an EventBridge Scheduler
event every period of its ``rate(...)`` expression (``scheduled_jobs``). A ``cron(...)``
expression is not evaluated locally: such a job runs once a day from the server's start.
SKYPORT_LOCAL_SCHEDULE_SECONDS, when set, replaces every period (tests, trials).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .gateway import LambdaContext
from .stack import BUCKET_RESOURCE, TABLE_RESOURCE, HookResources, load_template

log = logging.getLogger("skyport.pipeline")

FUNCTION_TYPE = "AWS::Serverless::Function"
# Environment names this shell may set for every function (its own value wins).
_SHELL_OVERRIDES = re.compile(
    r"^(SKYPORT_HOOK_|POWERTOOLS_|SKYPORT_GC_|SKYPORT_OSV_|SKYPORT_SCAN_|SKYPORT_RESCAN_)"
)
# The services the handlers reach through boto3's AWS_ENDPOINT_URL_<SERVICE> settings.
AWS_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_EVENTBRIDGE",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
)
STREAM_POLL_SECONDS = 0.2
QUEUE_WAIT_SECONDS = 1
RETRY_PAUSE_SECONDS = 1.0


# --------------------------------------------------------------- Lambda-shaped events


def lambda_sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One message from ReceiveMessage (AttributeNames and MessageAttributeNames "All") as
    Lambda's SQS event source delivers it ("Using Lambda with Amazon SQS", example event)."""
    # Message attributes keep their names; Lambda spells their value keys in camelCase.
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def lambda_stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record from GetRecords as Lambda's DynamoDB event source delivers it."""
    from skyport.events import record_as_json

    return {**record_as_json(record), "eventSourceARN": stream_arn, "awsRegion": region}


# ------------------------------------------------------------------ FilterCriteria


def matches(pattern: Any, value: Any) -> bool:
    """Whether a record matches one Lambda filter pattern (event filtering uses EventBridge
    pattern syntax). The subset here: nested objects, lists of exact values, ``prefix`` and
    ``exists``; anything else raises ValueError rather than match wrongly."""
    if isinstance(pattern, Mapping):
        if not isinstance(value, Mapping):
            return False
        for key, wanted in pattern.items():
            if isinstance(wanted, list) and any(
                isinstance(option, Mapping) and option.get("exists") is False for option in wanted
            ):
                if key in value:
                    return False
                continue
            if key not in value or not matches(wanted, value[key]):
                return False
        return True
    if isinstance(pattern, list):
        values = value if isinstance(value, list) else [value]
        return any(_matches_option(option, item) for option in pattern for item in values)
    raise ValueError(f"a filter pattern's leaf must be a list of values, not {pattern!r}")


def _matches_option(option: Any, value: Any) -> bool:
    if isinstance(option, Mapping):
        if set(option) == {"prefix"}:
            return isinstance(value, str) and value.startswith(option["prefix"])
        if set(option) == {"exists"}:
            return option["exists"] is True
        raise ValueError(f"filter operator not supported locally: {option!r}")
    return option == value


def passes(filters: list[dict[str, Any]], record: Mapping[str, Any]) -> bool:
    """FilterCriteria: no filters lets everything through; else any one filter matching."""
    return not filters or any(matches(pattern, record) for pattern in filters)


# --------------------------------------------------------- event source mappings


@dataclass(frozen=True)
class EventSourceMapping:
    """One ``Events`` entry of a function in template.yaml: which source invokes which handler."""

    function: str  # the function's logical id
    handler: str  # "package.module.function"
    kind: str  # "DynamoDB" or "SQS"
    source: str  # the logical id of the table (DynamoDB) or of the queue (SQS)
    batch_size: int
    filters: list[dict[str, Any]] = field(default_factory=list)
    maximum_retry_attempts: int = -1  # -1: until the record expires (Lambda's default)
    on_failure: str | None = None  # the logical id of the on-failure queue (DynamoDB)
    timeout: float = 3.0


def _logical_id(reference: Any) -> str | None:
    """The resource a ``!GetAtt X.Arn`` or ``!GetAtt X.StreamArn`` names."""
    target = reference.get("Fn::GetAtt") if isinstance(reference, Mapping) else None
    return target[0] if isinstance(target, list) and target else None


def event_source_mappings(template: dict[str, Any]) -> list[EventSourceMapping]:
    """Every DynamoDB and SQS event of every function in the template."""
    mappings = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        properties = resource.get("Properties", {})
        for event in (properties.get("Events") or {}).values():
            kind, event_properties = event.get("Type"), event.get("Properties", {})
            if kind == "DynamoDB":
                source = _logical_id(event_properties.get("Stream"))
                default_batch = 100
            elif kind == "SQS":
                source = _logical_id(event_properties.get("Queue"))
                default_batch = 10
            else:
                continue
            filters = [
                json.loads(entry["Pattern"])
                for entry in (event_properties.get("FilterCriteria") or {}).get("Filters", [])
            ]
            on_failure = (event_properties.get("DestinationConfig") or {}).get("OnFailure") or {}
            mappings.append(
                EventSourceMapping(
                    function=logical_id,
                    handler=properties["Handler"],
                    kind=kind,
                    source=source or "",
                    batch_size=int(event_properties.get("BatchSize", default_batch)),
                    filters=filters,
                    maximum_retry_attempts=int(event_properties.get("MaximumRetryAttempts", -1)),
                    on_failure=_logical_id(on_failure.get("Destination")),
                    timeout=float(properties.get("Timeout", 3)),
                )
            )
    return mappings


# ------------------------------------------------------------------ scheduled jobs

SCHEDULE_EVENT_TYPES = ("ScheduleV2", "Schedule")
LOCAL_SCHEDULE_VARIABLE = "SKYPORT_LOCAL_SCHEDULE_SECONDS"
# cron(...) is not evaluated locally: such a job runs once a day from the server's start.
CRON_LOCAL_PERIOD_SECONDS = 86400
_RATE = re.compile(r"rate\(\s*([0-9]+)\s+(minutes?|hours?|days?)\s*\)")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class ScheduledJob:
    """A function of the template with a schedule event, and how often it runs here."""

    function: str  # the function's logical id
    handler: str
    expression: str  # rate(...) or cron(...), the parameter's default resolved
    period_seconds: float
    timeout: float = 3.0
    # The schedule's Input (JSON), which Scheduler sends the function as its event in place
    # of the default one; None: none given.
    input: str | None = None


def schedule_period(expression: str) -> float:
    """Seconds between runs of a ``rate(N unit)`` expression (EventBridge Scheduler's
    grammar: minute(s), hour(s), day(s)); CRON_LOCAL_PERIOD_SECONDS for ``cron(...)``."""
    expression = expression.strip()
    if expression.startswith("cron("):
        return float(CRON_LOCAL_PERIOD_SECONDS)
    match = _RATE.fullmatch(expression)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"not a schedule expression this runner knows: {expression!r}")
    return float(int(match.group(1)) * _RATE_UNIT_SECONDS[match.group(2).rstrip("s")])


def scheduled_jobs(template: dict[str, Any], shell: Mapping[str, str] | None = None) -> list[ScheduledJob]:
    """Every ScheduleV2 / Schedule event of every function in the template; the period is
    the shell's SKYPORT_LOCAL_SCHEDULE_SECONDS when set."""
    override = (shell if shell is not None else os.environ).get(LOCAL_SCHEDULE_VARIABLE)
    parameters = template.get("Parameters", {})
    jobs = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        properties = resource.get("Properties", {})
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") not in SCHEDULE_EVENT_TYPES:
                continue
            raw = (event.get("Properties") or {}).get("ScheduleExpression") or (
                event.get("Properties") or {}
            ).get("Schedule")
            expression = _resolve_locally(raw, {}, parameters) or ""
            period = float(override) if override else schedule_period(expression)
            jobs.append(
                ScheduledJob(
                    function=logical_id,
                    handler=properties["Handler"],
                    expression=expression,
                    period_seconds=period,
                    timeout=float(properties.get("Timeout", 3)),
                    input=(event.get("Properties") or {}).get("Input"),
                )
            )
    return jobs


def scheduler_event(job: ScheduledJob, region: str) -> dict[str, Any]:
    """The event EventBridge Scheduler sends a Lambda target: the schedule's Input when it
    has one (UploadExpiryFunction's), else the default (events/gc/scheduled.json)."""
    if job.input is not None:
        return json.loads(job.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:scheduler:{region}:123456789012:schedule/default/local-{job.function}"],
        "detail": {},
    }


# ------------------------------------------------------------ function environment


def _resolve_locally(value: Any, refs: Mapping[str, str], parameters: Mapping[str, Any]) -> str | None:
    """A function's environment value with the local stack's names; None when it names
    something the local stack has not (the variable is then left out)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    ((function, argument),) = value.items()
    if function == "Ref":
        if argument in refs:
            return refs[argument]
        default = (parameters.get(argument) or {}).get("Default")
        return None if default is None else str(default)
    if function == "Fn::Sub" and isinstance(argument, str):
        unresolved = False

        def substitute(match: re.Match) -> str:
            nonlocal unresolved
            resolved = _resolve_locally({"Ref": match.group(1)}, refs, parameters)
            unresolved = unresolved or resolved is None
            return resolved or ""

        text = re.sub(r"\$\{([A-Za-z0-9:]+)\}", substitute, argument)
        return None if unresolved else text
    if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
        separator, items = argument
        items = [items] if isinstance(items, Mapping) else items
        parts = [_resolve_locally(item, refs, parameters) for item in items]
        return None if any(part is None for part in parts) else str(separator).join(parts)  # type: ignore[arg-type]
    return None


def function_environment(
    template: dict[str, Any], logical_id: str, refs: Mapping[str, str], shell: Mapping[str, str]
) -> dict[str, str]:
    """The environment template.yaml gives a function, with the local stack's names; this
    shell's SKYPORT_HOOK_* and POWERTOOLS_* values win over the template's."""
    variables = template["Resources"][logical_id].get("Properties", {}).get("Environment", {})
    parameters = template.get("Parameters", {})
    environment = {}
    for name, value in (variables.get("Variables") or {}).items():
        if _SHELL_OVERRIDES.match(name) and name in shell:
            environment[name] = shell[name]
            continue
        resolved = _resolve_locally(value, refs, parameters)
        if resolved is not None:
            environment[name] = resolved
    return environment


def load_handler(dotted: str, environment: Mapping[str, str]) -> Callable[[dict, Any], Any]:
    """``package.module.function`` loaded as a module of its own (not the one in
    sys.modules: each function gets its own globals, as in its own sandbox), with
    ``environment`` set while its init phase runs, then restored."""
    module_name, function = dotted.rsplit(".", 1)
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module {module_name} for handler {dotted}")
    module = importlib.util.module_from_spec(spec)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        spec.loader.exec_module(module)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return getattr(module, function)


def aws_endpoints(endpoint: str) -> None:
    """Point this process's SQS, EventBridge and Secrets Manager clients (boto3's
    AWS_ENDPOINT_URL_<SERVICE>) at ``endpoint`` (moto's), unless this shell says otherwise."""
    for name in AWS_ENDPOINT_VARIABLES:
        os.environ.setdefault(name, endpoint)


# ------------------------------------------------------------------------ pipeline


@dataclass
class LocalStack:
    """Where the local registry's resources are: its settings' table, bucket, region and
    endpoints, and the hook resources ``ensure_stack`` created."""

    table: str
    bucket: str
    region: str
    s3_endpoint: str
    dynamodb_endpoint: str
    hooks: HookResources


class LocalPipeline:
    """The event source mappings of template.yaml, run by threads of this process."""

    def __init__(self, stack: LocalStack, clients: Any, template: dict[str, Any] | None = None) -> None:
        """``clients``: an AwsClients on the local endpoints (dynamodb, dynamodbstreams, sqs)."""
        self.stack = stack
        self._clients = clients
        self._template = template if template is not None else load_template()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.invocations: dict[str, int] = {}  # function logical id -> invocations so far

    def mappings(self) -> list[EventSourceMapping]:
        return event_source_mappings(self._template)

    def start(self) -> list[str]:
        """Load each function's handler and start its poller; returns a line per mapping."""
        aws_endpoints(self.stack.dynamodb_endpoint)
        refs = {
            **self.stack.hooks.refs,
            TABLE_RESOURCE: self.stack.table,
            BUCKET_RESOURCE: self.stack.bucket,
            "AWS::Region": self.stack.region,
        }
        common = {
            "AWS_REGION": self.stack.region,
            "SKYPORT_S3_ENDPOINT": self.stack.s3_endpoint,
            "SKYPORT_DYNAMODB_ENDPOINT": self.stack.dynamodb_endpoint,
            # Lambda writes JSON logs to CloudWatch; here they would drown the server's
            # output: warnings and errors only, unless this shell asks for more.
            "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
        }
        lines = []
        for mapping in self.mappings():
            environment = {
                **function_environment(self._template, mapping.function, refs, os.environ),
                **common,
            }
            handler = load_handler(mapping.handler, environment)
            if mapping.kind == "DynamoDB":
                target = self._run_stream
                lines.append(f"{mapping.function} <- the table's stream")
            else:
                target = self._run_queue
                lines.append(
                    f"{mapping.function} <- {local_queue_name(self.stack.hooks.refs[mapping.source])}"
                )
            thread = threading.Thread(
                target=self._guarded,
                args=(target, mapping, handler),
                name=f"pipeline-{mapping.function}",
                daemon=True,
            )
            self._threads.append(thread)
        for job in scheduled_jobs(self._template):
            environment = {**function_environment(self._template, job.function, refs, os.environ), **common}
            handler = load_handler(job.handler, environment)
            lines.append(f"{job.function} <- {job.expression} (here every {job.period_seconds:g} s)")
            self._threads.append(
                threading.Thread(
                    target=self._run_schedule,
                    args=(job, handler),
                    name=f"schedule-{job.function}",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()
        return lines

    def _run_schedule(self, job: ScheduledJob, handler: Callable) -> None:
        """Invoke a scheduled function every period until stopped (the first run one period
        after the start, as a new schedule's first). Its errors are logged, as Lambda's."""
        while not self._stop.wait(job.period_seconds):
            self.invocations[job.function] = self.invocations.get(job.function, 0) + 1
            context = LambdaContext(
                function_name=f"{self.stack.table}-{job.function}",
                region=self.stack.region,
                deadline=time.monotonic() + job.timeout,
                aws_request_id=str(uuid.uuid4()),
            )
            try:
                handler(scheduler_event(job, self.stack.region), context)
            except Exception:  # noqa: BLE001 - a function error, as Lambda would log it
                log.exception("%s failed", job.function)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _context(self, mapping: EventSourceMapping) -> LambdaContext:
        return LambdaContext(
            function_name=f"{self.stack.table}-{mapping.function}",
            region=self.stack.region,
            deadline=time.monotonic() + mapping.timeout,
            aws_request_id=str(uuid.uuid4()),
        )

    def _invoke(self, mapping: EventSourceMapping, handler: Callable, event: dict) -> set[str] | None:
        """Call the handler; the identifiers it reported failed, or None when it raised."""
        self.invocations[mapping.function] = self.invocations.get(mapping.function, 0) + 1
        try:
            response = handler(event, self._context(mapping))
        except Exception:  # noqa: BLE001 - a function error, as Lambda would log it
            log.exception("%s failed", mapping.function)
            return None
        failures = (response or {}).get("batchItemFailures") or [] if isinstance(response, dict) else []
        return {str(failure.get("itemIdentifier")) for failure in failures if isinstance(failure, dict)}

    def _guarded(self, target: Callable, mapping: EventSourceMapping, handler: Callable) -> None:
        """A poller that meets an error (moto gone, say) waits and goes on, until stopped."""
        while not self._stop.is_set():
            try:
                target(mapping, handler)
            except Exception as error:  # noqa: BLE001 - keep the pipeline alive while the server runs
                log.warning("%s: poller error, retrying: %s", mapping.function, error)
                self._stop.wait(RETRY_PAUSE_SECONDS)

    # --- SQS -----------------------------------------------------------------------

    def _run_queue(self, mapping: EventSourceMapping, handler: Callable) -> None:
        sqs = self._clients.sqs
        url, arn = self.stack.hooks.refs[mapping.source], self.stack.hooks.arns[mapping.source]
        while not self._stop.is_set():
            page = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=max(1, min(mapping.batch_size, 10)),
                WaitTimeSeconds=QUEUE_WAIT_SECONDS,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = page.get("Messages") or []
            if not messages:
                continue
            records = [lambda_sqs_record(message, arn, self.stack.region) for message in messages]
            failed = self._invoke(mapping, handler, {"Records": records})
            if failed is None:
                continue  # a function error: every message comes back after its visibility
            done = [message for message in messages if message["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                        for index, message in enumerate(done[start : start + 10])
                    ],
                )

    # --- DynamoDB stream -------------------------------------------------------------

    def _stream_arn(self) -> str:
        table = self._clients.dynamodb.describe_table(TableName=self.stack.table)["Table"]
        return table["LatestStreamArn"]

    def _shards(self, streams: Any, arn: str) -> Iterator[str]:
        for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            yield shard["ShardId"]

    def _run_stream(self, mapping: EventSourceMapping, handler: Callable) -> None:
        """Lambda checkpoints a shard by sequence number; so does this poller: each poll
        asks for a new iterator after the last record read. (Holding moto's iterators
        would not do: moto's failed transactions put back a copy of the whole table, and
        an iterator on the old copy's stream never sees another record.)"""
        streams = self._clients.dynamodbstreams
        arn = self._stream_arn()
        last_read: dict[str, str | None] = {}
        pending: dict[str, list[dict]] = {}
        attempts: dict[str, int] = {}
        while not self._stop.is_set():
            for shard in self._shards(streams, arn):
                if shard not in last_read:
                    last_read[shard], pending[shard], attempts[shard] = None, [], 0
                if len(pending[shard]) < mapping.batch_size:
                    for record in self._read(streams, arn, shard, last_read[shard]):
                        last_read[shard] = record["dynamodb"]["SequenceNumber"]
                        shaped = lambda_stream_record(record, arn, self.stack.region)
                        if passes(mapping.filters, shaped):
                            pending[shard].append(shaped)
                if pending[shard]:
                    self._stream_batch(mapping, handler, pending, attempts, shard)
            self._stop.wait(STREAM_POLL_SECONDS)

    @staticmethod
    def _read(streams: Any, arn: str, shard: str, after: str | None) -> list[dict]:
        """The records of a shard after sequence number ``after`` (from its start: None)."""
        position: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
        if after is not None:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, **position)["ShardIterator"]
        return streams.get_records(ShardIterator=iterator, Limit=1000).get("Records") or []

    def _stream_batch(
        self,
        mapping: EventSourceMapping,
        handler: Callable,
        pending: dict[str, list[dict]],
        attempts: dict[str, int],
        shard: str,
    ) -> None:
        """One batch of a shard, retried from its lowest failed record as Lambda does."""
        batch = pending[shard][: mapping.batch_size]
        failed = self._invoke(mapping, handler, {"Records": batch})
        numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        if failed == set():
            del pending[shard][: len(batch)]
            attempts[shard] = 0
            return
        first = 0 if failed is None else min((numbers.index(n) for n in failed if n in numbers), default=0)
        del pending[shard][:first]
        attempts[shard] += 1
        if 0 <= mapping.maximum_retry_attempts < attempts[shard]:
            self._on_failure(mapping, shard, batch[first:])
            del pending[shard][: len(batch) - first]
            attempts[shard] = 0
            return
        self._stop.wait(RETRY_PAUSE_SECONDS)

    def _on_failure(self, mapping: EventSourceMapping, shard: str, records: list[dict]) -> None:
        """What Lambda sends its on-failure destination for a stream batch: where the
        records are, not the records."""
        log.warning("%s gave up on %d stream records of shard %s", mapping.function, len(records), shard)
        if not mapping.on_failure or mapping.on_failure not in self.stack.hooks.refs:
            return
        numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        self._clients.sqs.send_message(
            QueueUrl=self.stack.hooks.refs[mapping.on_failure],
            MessageBody=json.dumps(
                {
                    "requestContext": {
                        "condition": "RetryAttemptsExhausted",
                        "functionArn": mapping.function,
                    },
                    "DDBStreamBatchInfo": {
                        "shardId": shard,
                        "startSequenceNumber": numbers[0],
                        "endSequenceNumber": numbers[-1],
                        "batchSize": len(records),
                    },
                }
            ),
        )


def local_queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
