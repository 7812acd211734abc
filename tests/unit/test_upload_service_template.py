"""template.yaml's upload service (UploadService=on): ECS on Fargate behind an HTTPS load
balancer, in a VPC of its own, with least-privilege roles; and off, the stack as before.

The template is read as CloudFormation would deploy it for given parameters: conditions
evaluated, ``Fn::If`` resolved, resources and outputs under a false condition dropped
(``deployed``). The task role is compared with the AWS calls the upload path really makes:
uploads driven over HTTP through the app the service runs, against moto, every S3 and
DynamoDB call recorded at the boto3 layer.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from oci import MiB, sha256, sha512, upload_path
from skyport.storage import keys
from skyport_api.app import create_app
from skyport_cli.serve import UPLOAD_SERVICE_KEEP_ALIVE_SECONDS
from skyport_cli.stack import load_template
from starlette.testclient import TestClient

NO_VALUE = {"Ref": "AWS::NoValue"}
ON = {"UploadService": "on", "UploadDomainName": "uploads.example.com", "HostedZoneId": "Z123"}
RUNNING = {**ON, "UploadImageTag": "0123456789ab"}
OFF = {"UploadService": "off"}


# --------------------------------------------------------------------------- the template, deployed


def _parameters(template: dict, given: dict[str, str]) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    unknown = set(given) - set(values)
    assert not unknown, unknown
    return {**values, **given}


def _sub(text: str, parameters: dict[str, Any]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in parameters, f"${{{name}}} does not resolve from parameters alone"
        return str(parameters[name])

    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", value, text)


def _value(node: Any, parameters: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """The value of a condition's expression: the intrinsics conditions use here."""
    if not isinstance(node, dict):
        return node
    ((function, args),) = node.items()
    v = lambda n: _value(n, parameters, conditions)  # noqa: E731
    match function:
        case "Ref":
            return parameters[args]
        case "Condition":
            return conditions[args]
        case "Fn::Equals":
            return str(v(args[0])) == str(v(args[1]))
        case "Fn::Not":
            return not v(args[0])
        case "Fn::And":
            return all(v(a) for a in args)
        case "Fn::Or":
            return any(v(a) for a in args)
        case "Fn::Sub":
            return _sub(args, parameters)
        case "Fn::Split":
            return v(args[1]).split(args[0])
        case "Fn::Select":
            return v(args[1])[int(args[0])]
        case "Fn::Join":
            return args[0].join(v(a) for a in args[1])
    raise AssertionError(f"not evaluated here: {function}")


def conditions_for(template: dict, given: dict[str, str]) -> dict[str, bool]:
    parameters = _parameters(template, given)
    results: dict[str, bool] = {}
    pending = dict(template["Conditions"])
    while pending:  # conditions refer to conditions: evaluate each once its own are known
        for name, expression in list(pending.items()):
            try:
                results[name] = bool(_value(expression, parameters, results))
            except KeyError:
                continue
            del pending[name]
    return results


def _resolve_ifs(node: Any, conditions: dict[str, bool]) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return _resolve_ifs(when_true if conditions[name] else when_false, conditions)
        out = {k: _resolve_ifs(v, conditions) for k, v in node.items()}
        return {k: v for k, v in out.items() if v != NO_VALUE}
    if isinstance(node, list):
        return [item for item in (_resolve_ifs(i, conditions) for i in node) if item != NO_VALUE]
    return node


def deployed(given: dict[str, str]) -> dict:
    """Resources and outputs as CloudFormation would create them for these parameters."""
    template = load_template()
    conditions = conditions_for(template, given)
    kept = {
        section: {
            name: _resolve_ifs(body, conditions)
            for name, body in template.get(section, {}).items()
            if conditions.get(body.get("Condition"), True)
        }
        for section in ("Resources", "Outputs")
    }
    return {**kept, "conditions": conditions}


def _of_type(stack: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in stack["Resources"].items() if r["Type"] == kind}


def _one(stack: dict, kind: str) -> dict:
    (resource,) = _of_type(stack, kind).values()
    return resource["Properties"]


def _refers_to(node: Any, names: set[str]) -> set[str]:
    """The logical ids among ``names`` that ``node`` refers to (Ref, GetAtt, Sub)."""
    text = json.dumps(node)
    found = set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
    found |= set(re.findall(r'"Fn::GetAtt": \["([A-Za-z0-9]+)"', text))
    found |= set(re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text))
    return found & names


def _statements(document_holder: dict) -> list[dict]:
    return [s for p in document_holder["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# The upload service's resources; UploadExpiry* (issue 12: abandoned uploads expire) is
# not the upload service's and stays whether it runs or not.
UPLOAD_RESOURCES = {
    name
    for name in load_template()["Resources"]
    if name.startswith("Upload") and not name.startswith("UploadExpiry")
}


# --------------------------------------------------------------------------- on, off, not yet running


def test_off_leaves_the_stack_as_it_was():
    stack = deployed(OFF)
    assert not UPLOAD_RESOURCES & set(stack["Resources"])
    assert not any(name.startswith("Upload") for name in stack["Outputs"])
    # Nothing that stays refers to anything of the upload service: the function gets no
    # endpoint, no key, no grant.
    for name, resource in stack["Resources"].items():
        assert not _refers_to(resource, UPLOAD_RESOURCES), name
    variables = stack["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert not any(v.startswith("SKYPORT_UPLOAD") for v in variables)
    assert len(stack["Resources"]["ApiFunction"]["Properties"]["Policies"]) == 1


def test_on_is_the_default_and_needs_a_host_name_and_a_certificate():
    template = load_template()
    assert template["Parameters"]["UploadService"]["Default"] == "on"
    rule = template["Rules"]["UploadServiceNeedsDomain"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "UploadService"}, "on"]}
    asserted = json.dumps(rule["Assertions"])
    for parameter in ("UploadDomainName", "UploadCertificateArn", "HostedZoneId"):
        assert f'"Ref": "{parameter}"' in asserted


def test_before_an_image_is_given_nothing_runs_and_the_api_keeps_its_uploads():
    stack = deployed(ON)
    for kind in (
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
        "AWS::ApplicationAutoScaling::ScalableTarget",
    ):
        assert not _of_type(stack, kind), kind
    # What the image is pushed to, and what the first deploy waits on, exist already.
    assert _of_type(stack, "AWS::ECR::Repository") and _of_type(stack, "AWS::ECS::Cluster")
    assert "UploadRepositoryUri" in stack["Outputs"]
    variables = stack["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert "SKYPORT_UPLOAD_ENDPOINT" not in variables and "SKYPORT_UPLOAD_KEY_SECRET" not in variables


def test_running_the_api_hands_out_the_service_with_its_key():
    stack = deployed(RUNNING)
    fn = stack["Resources"]["ApiFunction"]["Properties"]
    variables = fn["Environment"]["Variables"]
    # The URL, and a reference to the service so that the function waits for it.
    assert variables["SKYPORT_UPLOAD_ENDPOINT"] == {
        "Fn::Select": [
            0,
            [{"Fn::Sub": "https://${UploadDomainName}"}, {"Fn::GetAtt": ["UploadEcsService", "Name"]}],
        ]
    }
    assert variables["SKYPORT_UPLOAD_KEY_SECRET"] == {"Ref": "UploadKeySecret"}
    granted = [s for p in fn["Policies"] for s in p["Statement"] if s.get("Sid") == "UploadKey"]
    assert granted == [
        {
            "Sid": "UploadKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": {"Ref": "UploadKeySecret"},
        }
    ]
    assert stack["Outputs"]["UploadEndpoint"]["Value"] == {"Fn::Sub": "https://${UploadDomainName}"}
    # The image is pinned: the repository's URI with the tag given, in an immutable repository.
    task = _one(stack, "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert container["Image"] == {"Fn::Sub": "${UploadRepository.RepositoryUri}:${UploadImageTag}"}
    repository = _one(stack, "AWS::ECR::Repository")
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    lifecycle = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])
    assert lifecycle["rules"][0]["selection"]["countType"] == "imageCountMoreThan"


# --------------------------------------------------------------------------- the host name rule


@pytest.mark.parametrize(
    ("registry", "uploads", "refused"),
    [
        ("registry.example.com", "uploads.example.com", False),  # a sibling: right
        ("registry.example.com", "uploads.registry.example.com", True),
        ("registry.example.com", "a.b.registry.example.com", True),
        ("registry.example.com", "a.b.c.d.registry.example.com", True),
        ("registry.example.com", "xregistry.example.com", False),  # not a subdomain, a neighbour
        ("registry.example.com", "registry.example.com.evil.net", False),
        ("example.com", "uploads.example.com", True),
        ("", "uploads.example.com", False),  # the registry on its execute-api host
        ("registry.example.com", "registry.example.net", False),
    ],
)
def test_the_upload_host_is_never_under_the_registry_host(registry, uploads, refused):
    template = load_template()
    conditions = conditions_for(template, {**ON, "DomainName": registry, "UploadDomainName": uploads})
    assert conditions["UploadDomainNameIsUnderDomainName"] is refused
    guard = template["Resources"]["UploadDomainNameMustNotBeUnderDomainName"]
    assert guard["Condition"] == "UploadDomainNameIsUnderDomainName"
    # Never signalled, and given a second: the stack fails at once, naming it.
    assert guard["Type"] == "AWS::CloudFormation::WaitCondition" and guard["Properties"]["Timeout"] == "1"


def test_the_same_host_for_both_is_refused_by_a_rule():
    assertions = load_template()["Rules"]["UploadServiceNeedsDomain"]["Assertions"]
    same = {"Fn::Not": [{"Fn::Equals": [{"Ref": "UploadDomainName"}, {"Ref": "DomainName"}]}]}
    assert any(a["Assert"] == same for a in assertions)


def test_host_names_are_lower_case():
    """The subdomain check compares names as written: CloudFormation cannot fold case."""
    parameters = load_template()["Parameters"]
    for name in ("DomainName", "UploadDomainName"):
        pattern = re.compile(parameters[name]["AllowedPattern"])
        assert pattern.fullmatch("") and pattern.fullmatch("uploads.example.com")
        assert not pattern.fullmatch("Uploads.Example.com") and not pattern.fullmatch("uploads")


def test_a_certificate_is_requested_only_without_one_given():
    with_zone = deployed(RUNNING)
    certificate = _one(with_zone, "AWS::CertificateManager::Certificate")
    assert certificate["ValidationMethod"] == "DNS"
    assert certificate["DomainValidationOptions"] == [
        {"DomainName": {"Ref": "UploadDomainName"}, "HostedZoneId": {"Ref": "HostedZoneId"}}
    ]
    records = _of_type(with_zone, "AWS::Route53::RecordSet")
    assert records["UploadDnsRecord"]["Properties"]["AliasTarget"]["DNSName"] == {
        "Fn::GetAtt": ["UploadLoadBalancer", "DNSName"]
    }
    given = deployed({**RUNNING, "HostedZoneId": "", "UploadCertificateArn": "arn:aws:acm:cert"})
    assert not _of_type(given, "AWS::CertificateManager::Certificate")
    assert not _of_type(given, "AWS::Route53::RecordSet")
    (listener,) = _of_type(given, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert listener["Properties"]["Certificates"] == [{"CertificateArn": {"Ref": "UploadCertificateArn"}}]


# --------------------------------------------------------------------------- network


def test_its_own_vpc_has_public_subnets_only_and_no_nat():
    stack = deployed(RUNNING)
    everything = load_template()["Resources"]
    assert not [n for n, r in everything.items() if r["Type"] == "AWS::EC2::NatGateway"]
    assert not [n for n, r in everything.items() if "NatGatewayId" in json.dumps(r.get("Properties", {}))]
    subnets = _of_type(stack, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    zones = [s["Properties"]["AvailabilityZone"] for s in subnets.values()]
    assert zones[0] != zones[1]
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())
    # Every subnet routes to the internet gateway, and that is the only route there is.
    associations = _of_type(stack, "AWS::EC2::SubnetRouteTableAssociation").values()
    tables = {a["Properties"]["SubnetId"]["Ref"]: a["Properties"]["RouteTableId"] for a in associations}
    assert set(tables) == set(subnets)
    routes = [r["Properties"] for r in _of_type(stack, "AWS::EC2::Route").values()]
    assert routes == [
        {
            "RouteTableId": {"Ref": "UploadPublicRouteTable"},
            "DestinationCidrBlock": "0.0.0.0/0",
            "GatewayId": {"Ref": "UploadInternetGateway"},
        }
    ]
    assert set(json.dumps(t) for t in tables.values()) == {json.dumps({"Ref": "UploadPublicRouteTable"})}
    # Tasks reach AWS through their own public IP, in those subnets.
    network = _one(stack, "AWS::ECS::Service")["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert {s["Ref"] for s in network["Subnets"]} == set(subnets)


def test_the_load_balancer_speaks_https_only():
    stack = deployed(RUNNING)
    balancer = _one(stack, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Scheme"] == "internet-facing" and balancer["Type"] == "application"
    attributes = {a["Key"]: a["Value"] for a in balancer["LoadBalancerAttributes"]}
    # Long enough for a closing request's silent work on a big blob; never the 60 s default.
    idle = int(attributes["idle_timeout.timeout_seconds"])
    assert idle >= 300
    # The service keeps idle connections longer than the balancer (the ELB guide), so the
    # balancer never sends a request down a connection the server has just closed.
    assert UPLOAD_SERVICE_KEEP_ALIVE_SECONDS > idle
    # Access logs would record upload URLs, capabilities included.
    assert attributes["access_logs.s3.enabled"] == "false"
    listeners = _of_type(stack, "AWS::ElasticLoadBalancingV2::Listener").values()
    assert [(li["Properties"]["Protocol"], li["Properties"]["Port"]) for li in listeners] == [("HTTPS", 443)]
    (listener,) = listeners
    assert listener["Properties"]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    # Port 80 nowhere, not even to redirect.
    groups = _of_type(stack, "AWS::EC2::SecurityGroup")
    ingress = groups["UploadLoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["ToPort"], r["CidrIp"]) for r in ingress] == [(443, 443, "0.0.0.0/0")]


def test_tasks_take_the_container_port_from_the_load_balancer_only():
    stack = deployed(RUNNING)
    (container,) = _one(stack, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    (mapping,) = container["PortMappings"]
    port = mapping["ContainerPort"]
    task_group = stack["Resources"]["UploadTaskSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in task_group
    # The load balancer may reach the tasks' port and nothing else (inline: no default allow-all).
    balancer_group = stack["Resources"]["UploadLoadBalancerSecurityGroup"]["Properties"]
    assert [
        (r["FromPort"], r["ToPort"], r["DestinationSecurityGroupId"])
        for r in balancer_group["SecurityGroupEgress"]
    ] == [(port, port, {"Ref": "UploadTaskSecurityGroup"})]
    assert not _of_type(stack, "AWS::EC2::SecurityGroupEgress")
    # The tasks talk HTTPS out (AWS APIs), nothing else.
    assert [(r["FromPort"], r["ToPort"]) for r in task_group["SecurityGroupEgress"]] == [(443, 443)]
    ingress = [r["Properties"] for r in _of_type(stack, "AWS::EC2::SecurityGroupIngress").values()]
    assert ingress == [
        {
            "GroupId": {"Ref": "UploadTaskSecurityGroup"},
            "Description": ingress[0]["Description"],
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "SourceSecurityGroupId": {"Ref": "UploadLoadBalancerSecurityGroup"},
        }
    ]
    target_group = _one(stack, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert target_group["Port"] == port and target_group["TargetType"] == "ip"
    (attached,) = _one(stack, "AWS::ECS::Service")["LoadBalancers"]
    assert attached["ContainerPort"] == port and attached["ContainerName"] == container["Name"]


def test_health_check_and_draining():
    stack = deployed(RUNNING)
    target_group = _one(stack, "AWS::ElasticLoadBalancingV2::TargetGroup")
    # The upload service answers GET /healthz with 200 (design contract with its code).
    assert target_group["HealthCheckPath"] == "/healthz"
    assert target_group["Matcher"] == {"HttpCode": "200"}
    attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
    assert int(attributes["deregistration_delay.timeout_seconds"]) > 0


# --------------------------------------------------------------------------- the service


def test_service_fargate_arm64_circuit_breaker_and_scaling():
    stack = deployed(RUNNING)
    task = _one(stack, "AWS::ECS::TaskDefinition")
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    assert task["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    # Every CPU size allowed has a memory size Fargate accepts with it (the least).
    template = load_template()
    fargate_least_memory = {"512": "1024", "1024": "2048", "2048": "4096"}
    for cpu in template["Parameters"]["UploadTaskCpu"]["AllowedValues"]:
        assert template["Mappings"]["UploadTaskMemory"][cpu]["Memory"] == fargate_least_memory[cpu]
    assert task["Memory"] == {"Fn::FindInMap": ["UploadTaskMemory", {"Ref": "UploadTaskCpu"}, "Memory"]}
    service = _one(stack, "AWS::ECS::Service")
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    # Auto scaling owns the count; a DesiredCount would reset it on every update.
    assert "DesiredCount" not in service
    target = _one(stack, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["MinCapacity"] == 1 and target["MaxCapacity"] == {"Ref": "UploadMaxTasks"}
    policy = _one(stack, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert policy["PolicyType"] == "TargetTrackingScaling"
    (container,) = task["ContainerDefinitions"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert "RetentionInDays" in stack["Resources"]["UploadLogGroup"]["Properties"]


def test_the_container_environment_follows_the_design():
    stack = deployed(RUNNING)
    (container,) = _one(stack, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["SKYPORT_BUCKET"] == {"Ref": "BlobBucket"}
    assert environment["SKYPORT_TABLE"] == {"Ref": "MetadataTable"}
    assert {"AWS_REGION", "SKYPORT_AUTH", "SKYPORT_REGISTRY_URL"} <= set(environment)
    # The key comes from the secret, injected by ECS: never a plain value in the definition.
    assert "SKYPORT_UPLOAD_KEY" not in environment
    assert container["Secrets"] == [{"Name": "SKYPORT_UPLOAD_KEY", "ValueFrom": {"Ref": "UploadKeySecret"}}]
    secret = stack["Resources"]["UploadKeySecret"]["Properties"]
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    # A key of its own: the upload service cannot sign registry tokens.
    assert not _refers_to(stack["Resources"]["UploadTaskDefinition"], {"SigningKeySecret", "AdminSecret"})


def test_the_secret_is_read_by_the_execution_role_only():
    stack = deployed(RUNNING)
    execution = _statements(stack["Resources"]["UploadExecutionRole"]["Properties"])
    reads = [s for s in execution if "secretsmanager:GetSecretValue" in _as_list(s["Action"])]
    assert [s["Resource"] for s in reads] == [{"Ref": "UploadKeySecret"}]
    # The only "*": the registry login, which no resource can scope.
    wildcard = [s for s in execution if s["Resource"] == "*"]
    assert [s["Action"] for s in wildcard] == ["ecr:GetAuthorizationToken"]
    pulls = [s for s in execution if "ecr:BatchGetImage" in _as_list(s["Action"])]
    assert [s["Resource"] for s in pulls] == [{"Fn::GetAtt": ["UploadRepository", "Arn"]}]
    task = _statements(stack["Resources"]["UploadTaskRole"]["Properties"])
    assert not [a for s in task for a in _as_list(s["Action"]) if a.startswith("secretsmanager:")]


# --------------------------------------------------------------------------- the task role


def _task_role() -> list[dict]:
    return _statements(deployed(RUNNING)["Resources"]["UploadTaskRole"]["Properties"])


def test_the_task_role_is_the_bucket_prefixes_and_the_table_only():
    statements = _task_role()
    assert all(s["Effect"] == "Allow" for s in statements)
    resources = [r for s in statements for r in _as_list(s["Resource"])]
    assert "*" not in resources
    services = {a.split(":")[0] for s in statements for a in _as_list(s["Action"])}
    assert services == {"s3", "dynamodb"}
    for statement in statements:
        actions = _as_list(statement["Action"])
        if actions[0].startswith("s3:"):
            assert statement["Resource"] == [
                {"Fn::Sub": "${BlobBucket.Arn}/blobs/*"},
                {"Fn::Sub": "${BlobBucket.Arn}/uploads/*"},
            ]
        else:
            assert statement["Resource"] == {"Fn::GetAtt": ["MetadataTable", "Arn"]}
            leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
            assert set(leading) == set(UPLOAD_PATH_PARTITIONS)


# The partitions the upload path may touch, from storage/keys.py (not restated by hand).
UPLOAD_PATH_PARTITIONS = [
    keys.upload("*")["PK"]["S"],
    keys.open_uploads("*")["PK"]["S"],
    keys.blob("*")["PK"]["S"],
    keys.blob_link("*", "sha256:x")["PK"]["S"],
]
# Operations whose IAM action is not service:Operation (Service Authorization Reference).
ACTIONS_OF = {
    "HeadObject": ["s3:GetObject"],
    "CreateMultipartUpload": ["s3:PutObject"],
    "UploadPart": ["s3:PutObject"],
    "CompleteMultipartUpload": ["s3:PutObject"],
    "UploadPartCopy": ["s3:GetObject", "s3:PutObject"],
    "CopyObject": ["s3:GetObject", "s3:PutObject"],
}


class CallRecorder:
    """Every S3 and DynamoDB call the registry's own clients make while ``recording``:
    operation, S3 key (and copy source), DynamoDB partition keys."""

    def __init__(self, clients) -> None:
        self.recording = False
        self.calls: list[tuple[str, str, list[str]]] = []
        self._hooks = [(clients.s3, "s3"), (clients.dynamodb, "dynamodb")]

    def _record(self, params: dict, model, **_: Any) -> None:
        if not self.recording:
            return
        service = model.service_model.service_name
        where: list[str] = []
        if service == "s3":
            where.append(params["Key"])
            source = params.get("CopySource")
            if source:
                where.append(source["Key"] if isinstance(source, dict) else source.split("/", 1)[1])
        else:
            for item in [params.get("Key"), params.get("Item")]:
                if item:
                    where.append(item["PK"]["S"])
            for action in params.get("TransactItems", []):
                ((_, body),) = action.items()
                where.append((body.get("Key") or body["Item"])["PK"]["S"])
        self.calls.append((service, model.name, where))

    def __enter__(self) -> CallRecorder:
        for client, service in self._hooks:
            client.meta.events.register(f"before-parameter-build.{service}", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for client, service in self._hooks:
            client.meta.events.unregister(f"before-parameter-build.{service}", self._record)


@pytest.fixture
def recorder(registry) -> Iterator[tuple[TestClient, CallRecorder]]:
    with CallRecorder(registry.clients) as calls, TestClient(create_app(registry)) as client:
        yield client, calls


def _upload_path_calls(client: TestClient, calls: CallRecorder) -> None:
    """What the upload service serves, in every way clients use it: PATCH streamed and in
    chunks (tails, a fold), PUT with and without a last chunk, a sha512 close (re-read),
    a blob pushed twice, GET status, DELETE. POST stays on the API: not recorded."""
    repo = "team/app"

    def start() -> str:
        calls.recording = False
        response = client.post(f"/v2/{repo}/blobs/uploads/")
        assert response.status_code == 202, response.text
        calls.recording = True
        return upload_path(response.headers["Location"])

    def send(method: str, location: str, data: bytes = b"", **headers: str):
        headers = {"Content-Type": "application/octet-stream", **headers}
        return client.request(method, location, content=data, headers=headers)

    def close(response, digest: str, data: bytes = b"", **headers: str) -> int:
        location = upload_path(response.headers["Location"])
        return send("PUT", f"{location}?digest={digest}", data, **headers).status_code

    big = os.urandom(6 * MiB)
    # docker, podman, skopeo: one streamed PATCH, an empty PUT.
    location = start()
    response = send("PATCH", location, big)
    assert response.status_code == 202, response.text
    assert close(response, sha256(big)) == 201
    # The same blob again: the first record wins, the second object goes.
    location = start()
    response = send("PATCH", location, big)
    assert close(response, sha256(big)) == 201
    # Chunks with Content-Range: a tail kept, read back, the last chunk in the PUT.
    data = os.urandom(7 * MiB)
    location = start()
    response = send("PATCH", location, data[: 3 * MiB], **{"Content-Range": f"0-{3 * MiB - 1}"})
    assert response.status_code == 202, response.text
    location = upload_path(response.headers["Location"])
    second = {"Content-Range": f"{3 * MiB}-{6 * MiB - 1}"}
    response = send("PATCH", location, data[3 * MiB : 6 * MiB], **second)
    assert response.status_code == 202, response.text
    location = upload_path(response.headers["Location"])
    assert send("GET", location).status_code == 204
    rest = {"Content-Range": f"{6 * MiB}-{len(data) - 1}"}
    assert send("PUT", location + f"?digest={sha256(data)}", data[6 * MiB :], **rest).status_code == 201
    # A chunk after a short last part: the fold (complete, copy into a new upload).
    data = os.urandom(7 * MiB)
    location = start()
    response = send("PATCH", location, data[: 6 * MiB])
    location = upload_path(response.headers["Location"])
    response = send("PATCH", location, data[6 * MiB :], **{"Content-Range": f"{6 * MiB}-{len(data) - 1}"})
    assert response.status_code == 202, response.text
    location = upload_path(response.headers["Location"])
    # Closed with sha512: hashed as sha256 on the way, so the blob is read again.
    assert send("PUT", location + f"?digest={sha512(data)}").status_code == 201
    # Cancelled mid-way: the multipart upload aborted, the session deleted.
    location = start()
    response = send("PATCH", location, big)
    assert send("DELETE", upload_path(response.headers["Location"])).status_code == 204
    calls.recording = False


def test_the_task_role_grants_exactly_what_the_upload_path_calls(recorder):
    client, calls = recorder
    _upload_path_calls(client, calls)
    assert calls.calls, "nothing recorded"
    granted: dict[str, dict] = {}
    for statement in _task_role():
        for action in _as_list(statement["Action"]):
            granted[action] = statement
    needed: dict[str, set[str]] = {}
    for service, operation, where in calls.calls:
        for action in ACTIONS_OF.get(operation, [f"{service}:{operation}"]):
            needed.setdefault(action, set()).add(operation)
        if operation == "TransactWriteItems":
            pytest.fail("the upload path runs a transaction: grant its items' actions and extend this test")
        for place in where:
            if service == "s3":
                assert place.startswith(("blobs/", "uploads/")), (operation, place)
            else:
                assert any(fnmatch.fnmatchcase(place, p) for p in UPLOAD_PATH_PARTITIONS), (operation, place)
    missing = sorted(set(needed) - set(granted))
    unused = sorted(set(granted) - set(needed))
    assert missing == [], f"the upload path calls these, the task role does not grant them: {missing}"
    assert unused == [], f"the task role grants these, the upload path never calls them: {unused}"


def test_the_task_role_is_what_the_upload_service_declares_it_calls():
    """The upload service names its AWS calls (skyport_api.upload_service.AWS_CALLS, which
    its own tests check against the calls it really makes); the role grants exactly those."""
    from skyport_api import upload_service

    declared = {
        action
        for service, operations in upload_service.AWS_CALLS.items()
        for operation in operations
        for action in ACTIONS_OF.get(operation, [f"{service}:{operation}"])
    }
    granted = {action for statement in _task_role() for action in _as_list(statement["Action"])}
    assert granted == declared
    prefixes = {
        resource["Fn::Sub"].split("/", 1)[1]
        for statement in _task_role()
        for resource in _as_list(statement["Resource"])
        if isinstance(resource, dict) and "Fn::Sub" in resource and "BlobBucket" in resource["Fn::Sub"]
    }
    assert prefixes == {prefix + "*" for prefix in upload_service.S3_PREFIXES}
    partitions = {
        pattern
        for statement in _task_role()
        for pattern in _as_list(
            statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [])
        )
    }
    assert partitions == {f"{kind}#*" for kind in upload_service.DYNAMODB_ITEMS}
