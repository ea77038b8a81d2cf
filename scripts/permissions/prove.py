#!/usr/bin/env python3
"""Permission proof: every AWS call the functions make is granted by the role SAM deploys.

LocalStack enforces no IAM, so the suite records each call the functions make instead
(shared/src/aws_calls.rs, one JSON line per call), and this holds the record against the IAM
roles SAM's own translator makes from template.yaml. It fails on a call not granted (or denied),
a declared function with no recorded call, a call by an undeclared function or to an undeclared
resource, and a grant in the template's own Policies that no call used (or a wildcard allowing
more than the calls use). Unused grants SAM adds itself (logs, X-Ray, the SQS poller) are only
listed: the Lambda service uses them, not our code.

  python scripts/permissions/prove.py --template template.yaml \
      --calls target/aws-calls/calls.jsonl [--report target/aws-calls/report.md]

Needs the tools venv (scripts/tools.sh all). Exit: 0 proven, 1 problems, 2 inputs unusable.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
from collections import defaultdict, namedtuple
from pathlib import Path

from policy_sentry.querying.actions import get_action_data
from policy_sentry.querying.arns import does_arn_match
from policyuniverse.expander_minimizer import get_actions_from_statement
from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse

# A fake deployment: physical name = logical id, so both sides of the proof name resources alike.
PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "haul",
          "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/haul/0"}
NO_VALUE = object()  # AWS::NoValue: the property or list item disappears

# What !Ref and !GetAtt give, by resource type, where !Ref is not the bare name.
QUEUE_URL = "https://sqs.{region}.amazonaws.com/{account}/{name}"
REF = {"AWS::SQS::Queue": QUEUE_URL, "AWS::SNS::Topic": "arn:{partition}:sns:{region}:{account}:{name}",
       "AWS::IAM::ManagedPolicy": "arn:{partition}:iam::{account}:policy/{name}",
       # A secret's ARN ends in a random suffix AWS adds; !Ref returns the full ARN.
       "AWS::SecretsManager::Secret": "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf"}
ATTRS = {
    ("AWS::DynamoDB::Table", "Arn"): "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    ("AWS::SQS::Queue", "Arn"): "arn:{partition}:sqs:{region}:{account}:{name}",
    ("AWS::SQS::Queue", "QueueUrl"): QUEUE_URL,
    ("AWS::SQS::Queue", "QueueName"): "{name}",
    ("AWS::S3::Bucket", "Arn"): "arn:{partition}:s3:::{name}",
    ("AWS::Lambda::Function", "Arn"): "arn:{partition}:lambda:{region}:{account}:function:{name}",
    ("AWS::IAM::Role", "Arn"): "arn:{partition}:iam::{account}:role/{name}",
    ("AWS::Logs::LogGroup", "Arn"): "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    ("AWS::SNS::Topic", "TopicArn"): "arn:{partition}:sns:{region}:{account}:{name}",
    ("AWS::DynamoDB::Table", "StreamArn"):
        "arn:{partition}:dynamodb:{region}:{account}:table/{name}/stream/2026-01-01T00:00:00.000",
    # Not a CloudFormation attribute (a secret's !Ref is its ARN): how a recorded call's
    # secret is turned into the ARN its grant names.
    ("AWS::SecretsManager::Secret", "Arn"):
        "arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-AbCdEf",
}
# Recorded target keys that name a resource, and the type that resource must have.
TARGET_KINDS = {"table": "AWS::DynamoDB::Table", "queue": "AWS::SQS::Queue", "bucket": "AWS::S3::Bucket",
                "secret": "AWS::SecretsManager::Secret"}

# Operations whose IAM action is not "<service>:<operation>": a str is the one action, a list
# all of them, a dict the action per target "part" (None: a target without one).
PUT = "s3:PutObject"  # each step of a multipart upload is authorized as PutObject
COPY = {"Source": "s3:GetObject", None: PUT}  # reads the source, writes the destination
EXCEPTIONS = {
    ("s3", "ListParts"): "s3:ListMultipartUploadParts",  # IAM names it after the upload
    ("s3", "CreateMultipartUpload"): PUT, ("s3", "UploadPart"): PUT,
    ("s3", "CompleteMultipartUpload"): PUT,
    ("s3", "CopyObject"): COPY, ("s3", "UploadPartCopy"): COPY,
    ("s3", "HeadObject"): "s3:GetObject",  # HEAD is a GET without the body
    ("s3", "HeadBucket"): "s3:ListBucket",  # as are the listings of a bucket's objects
    ("s3", "ListObjects"): "s3:ListBucket", ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListMultipartUploads"): "s3:ListBucketMultipartUploads",
    ("s3", "DeleteObjects"): "s3:DeleteObject",  # per key: the recording must name each key
    # S3 API reference, GetObjectAttributes without a version id: needs both.
    ("s3", "GetObjectAttributes"): ["s3:GetObject", "s3:GetObjectAttributes"],
    # A transaction is authorized part by part, each as the single-item action of its kind.
    ("dynamodb", "TransactWriteItems"): {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
                                         "Delete": "dynamodb:DeleteItem",
                                         "ConditionCheck": "dynamodb:ConditionCheckItem"},
    ("dynamodb", "TransactGetItems"): {"Get": "dynamodb:GetItem"},
    # SQS batches are authorized as the single-message action.
    ("sqs", "SendMessageBatch"): "sqs:SendMessage", ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}

# AWS managed policies SAM attaches itself (execution role, Tracing, pull event sources). Their
# documents are not offline: these are their actions as AWS publishes them, all on "*".
LOGS = "logs:CreateLogGroup logs:CreateLogStream logs:PutLogEvents "
SAM_MANAGED = {name: actions.split() for name, actions in {
    "service-role/AWSLambdaBasicExecutionRole": LOGS,
    "AWSXrayWriteOnlyAccess": "xray:PutTraceSegments xray:PutTelemetryRecords xray:GetSamplingRules "
                              "xray:GetSamplingTargets xray:GetSamplingStatisticSummaries",
    "service-role/AWSLambdaSQSQueueExecutionRole":
        LOGS + "sqs:ReceiveMessage sqs:DeleteMessage sqs:GetQueueAttributes",
    "service-role/AWSLambdaDynamoDBExecutionRole": LOGS + "dynamodb:DescribeStream "
        "dynamodb:GetRecords dynamodb:GetShardIterator dynamodb:ListStreams",
    "service-role/AWSLambdaKinesisExecutionRole": LOGS + "kinesis:DescribeStream "
        "kinesis:DescribeStreamSummary kinesis:GetRecords kinesis:GetShardIterator "
        "kinesis:ListShards kinesis:ListStreams kinesis:SubscribeToShard",
}.items()}


class ProofError(Exception):
    """No proof can be made: an unusable input, or a template construct not modelled here."""


class CallError(Exception):
    """One recorded call cannot be checked: reported as a problem."""


def listify(value):
    return value if isinstance(value, list) else [value]


def logical_of(getatt) -> str:
    return listify(getatt)[0].split(".")[0]  # Fn::GetAtt in its list or dotted form


def translate(raw: dict) -> dict:
    """The CloudFormation SAM deploys, translated as `sam validate` does (local CodeUri is fine)."""
    class NoPolicyNames:  # maps managed policy names to ARNs; the template names none
        def load(self):
            return {}
    # SAM's translator counts metrics it never publishes here and warns about it on exit.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):  # offline: a developer's profile is moot
        os.environ.pop(var, None)
    pseudo = {k: PSEUDO[k] for k in ("AWS::Region", "AWS::AccountId", "AWS::Partition")}
    validator = SamTemplateValidator(copy.deepcopy(raw), NoPolicyNames(), region=REGION,
                                     parameter_overrides=pseudo)
    return yaml_parse(validator.get_translated_template_if_valid())


class Template:
    """template.yaml as SAM deploys it, with CloudFormation's intrinsics evaluated."""

    def __init__(self, text: str):
        try:
            self.cfn = translate(yaml_parse(text))
        except Exception as err:  # YAML or SAM errors alike: the template is unusable
            raise ProofError(f"template: {err}") from err
        self.resources = self.cfn.get("Resources", {})
        self.conditions = self.cfn.get("Conditions", {})
        self.params = {}  # default parameter values, as the deploy without overrides has them
        for name, spec in self.cfn.get("Parameters", {}).items():
            if spec.get("Default") is None:
                raise ProofError(f"parameter {name} has no Default to evaluate the template with")
            listy = spec.get("Type") == "CommaDelimitedList" or spec.get("Type", "").startswith("List<")
            self.params[name] = str(spec["Default"]).split(",") if listy else str(spec["Default"])

    def exists(self, resource: dict) -> bool:
        return "Condition" not in resource or self.condition(resource["Condition"])

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def resolve(self, v):
        if isinstance(v, list):
            return [x for x in map(self.resolve, v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            ((key, arg),) = v.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::"):
                return self.fn(key, arg)
            if key == "Condition" and isinstance(arg, str):  # one condition naming another
                return self.condition(arg)
        return {k: r for k, x in v.items() if (r := self.resolve(x)) is not NO_VALUE}

    def fn(self, name: str, arg):
        r = self.resolve
        ops = {"Fn::GetAtt": lambda: self.getatt(*(arg if isinstance(arg, list) else arg.split(".", 1))),
               "Fn::Sub": lambda: self.sub(*listify(arg)),
               "Fn::If": lambda: r(arg[1] if self.condition(arg[0]) else arg[2]),
               "Fn::Equals": lambda: str(r(arg[0])) == str(r(arg[1])),
               "Fn::Not": lambda: not r(arg[0]),
               "Fn::And": lambda: all(r(arg)), "Fn::Or": lambda: any(r(arg)),
               "Fn::Join": lambda: arg[0].join(map(str, r(arg[1]))),
               "Fn::Select": lambda: r(arg[1])[int(r(arg[0]))]}
        if name not in ops:
            raise ProofError(f"cannot evaluate {name} {arg!r} offline")
        return ops[name]()

    def fill(self, pattern: str, logical: str) -> str:
        return pattern.format(partition=PARTITION, region=REGION, account=ACCOUNT, name=logical)

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO or name in self.params:
            return PSEUDO.get(name, self.params.get(name))
        if name in self.resources:
            return self.fill(REF.get(self.resources[name]["Type"], "{name}"), name)
        raise ProofError(f"!Ref {name}: no such parameter or resource")

    def getatt(self, logical: str, attr: str) -> str:
        rtype = self.resources.get(logical, {}).get("Type")
        if (rtype, attr) not in ATTRS:
            raise ProofError(f"!GetAtt {logical}.{attr} ({rtype}): not modelled in ATTRS")
        return self.fill(ATTRS[(rtype, attr)], logical)

    def sub(self, text: str, variables: dict | None = None) -> str:
        variables = self.resolve(variables or {})

        def one(m: re.Match) -> str:
            name = m[1]
            if name.startswith("!"):  # ${!Literal} is the text ${Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            return self.getatt(*name.split(".", 1)) if "." in name else str(self.ref(name))
        return re.sub(r"\$\{([^}]+)\}", one, text)


Function = namedtuple("Function", "logical binary role env")  # role: its IAM role's logical id
# label: where it is written (inline policy and statement index, or managed policy name);
# managed: SAM added it for the Lambda service, so it is listed when unused, never failed.
Grant = namedtuple("Grant", "label managed stmt")
Row = namedtuple("Row", "operation action resource verdict")
# rows: per function binary; failures fail the proof; notes (SAM's unused grants) only inform.
Result = namedtuple("Result", "functions rows failures notes")


def functions(t: Template) -> dict[str, Function]:
    """Every Lambda function (SAM's, translated, and plain ones), by its binary's name."""
    out = {}
    for logical, res in t.resources.items():
        if res.get("Type") != "AWS::Lambda::Function" or not t.exists(res):
            continue
        props, role = res.get("Properties", {}), res.get("Properties", {}).get("Role")
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            raise ProofError(f"{logical}: no Metadata.BuildProperties.Binary for recordings to name")
        role_id = logical_of(role["Fn::GetAtt"]) if isinstance(role, dict) and "Fn::GetAtt" in role else None
        if t.resources.get(role_id, {}).get("Type") != "AWS::IAM::Role":
            raise ProofError(f"{logical}: its Role {role!r} is no role declared in the template")
        out[binary] = Function(logical, binary, role_id, props.get("Environment", {}).get("Variables", {}))
    return out


def role_grants(t: Template, fn: Function) -> list[Grant]:
    """Every statement of the function's role: its inline policies and its managed ones."""
    props = t.resources[fn.role].get("Properties", {})
    for logical, res in t.resources.items():  # other ways to grant a role, not modelled here
        names = [*res.get("Properties", {}).get("Roles", []), res.get("Properties", {}).get("RoleName")]
        if res["Type"].startswith("AWS::IAM::") and res["Type"] != "AWS::IAM::Role" \
                and {"Ref": fn.role} in names:
            raise ProofError(f"{logical} ({res['Type']}) grants {fn.role}: not modelled by this proof")
    if "PermissionsBoundary" in props:
        raise ProofError(f"{fn.role}: permissions boundaries are not modelled by this proof")
    out = []
    for policy in t.resolve(props.get("Policies", [])):
        for i, stmt in enumerate(listify(policy["PolicyDocument"].get("Statement", []))):
            if stmt.get("Effect") not in ("Allow", "Deny"):
                raise ProofError(f"{policy['PolicyName']} #{i}: Effect must be Allow or Deny")
            out.append(Grant(f"{policy['PolicyName']} #{i}" + (f" {stmt['Sid']}" if "Sid" in stmt else ""),
                             False, stmt))
    for arn in t.resolve(props.get("ManagedPolicyArns", [])):
        name = arn.split(":policy/", 1)[-1]
        if not arn.startswith(f"arn:{PARTITION}:iam::aws:policy/") or name not in SAM_MANAGED:
            raise ProofError(f"{fn.role}: managed policy {arn} is unknown offline: add its actions "
                             "to SAM_MANAGED in scripts/permissions/prove.py")
        stmt = {"Effect": "Allow", "Action": SAM_MANAGED[name], "Resource": "*"}
        out.append(Grant(name.split("/")[-1], True, stmt))
    return out


def env_resource(t: Template, fn: Function, value) -> str:
    """The logical id behind a recorded ${ENV:NAME}: what the function's NAME is a !Ref/!GetAtt of."""
    m = re.fullmatch(r"\$\{ENV:(\w+)\}", value) if isinstance(value, str) else None
    undeclared = "a call to a resource the template does not declare"
    if not m:
        raise CallError(f"{value!r} is no ${{ENV:NAME}}: {undeclared}")
    if m[1] not in fn.env:
        raise CallError(f"{fn.logical} has no environment variable {m[1]}: {undeclared}")
    v = fn.env[m[1]]
    if isinstance(v, dict) and v.get("Ref") in t.resources:
        return v["Ref"]
    if isinstance(v, dict) and "Fn::GetAtt" in v:
        return logical_of(v["Fn::GetAtt"])
    raise CallError(f"{m[1]} is {v!r}, no !Ref or !GetAtt of a template resource: {undeclared}")


def target_arn(t: Template, fn: Function, target: dict) -> str:
    keys = [k for k in target if k in TARGET_KINDS] or \
        [k for k, v in target.items() if isinstance(v, str) and v.startswith("${ENV:")]
    if len(keys) != 1:
        raise CallError(f"target {json.dumps(target)} names no single resource")
    key = keys[0]
    logical = env_resource(t, fn, target[key])
    rtype = t.resources[logical]["Type"]
    if key in TARGET_KINDS and rtype != TARGET_KINDS[key]:
        raise CallError(f"its {key} {target[key]} is {logical}, a {rtype}")
    arn = t.getatt(logical, "Arn")
    if key == "table" and target.get("index"):
        arn += f"/index/{target['index']}"
    if key == "bucket" and target.get("key"):
        arn += f"/{target['key']}"
    return arn


def checked_resource(action: str, arn: str) -> str:
    """The resource IAM authorizes `action` on, once policy_sentry's tables say the action exists
    and the ARN is one of its resource types (an object ARN for a bucket action is caught here)."""
    prefix, _, name = action.partition(":")
    rows = (get_action_data(prefix, name) or {}).get(prefix)
    if not rows:
        raise CallError(f"{action} is no IAM action (policy_sentry): add the operation to EXCEPTIONS")
    formats = sorted({r["resource_arn_format"] for r in rows} - {"*"})
    if not formats:
        return "*"  # the action takes no resource: IAM grants it on "*" only
    if arn == "*":
        raise CallError(f"{action} acts on {' or '.join(formats)}, but the call recorded no target")
    if not any(does_arn_match(arn, f) for f in formats):
        raise CallError(f"{arn} fits none of {action}'s resource types: {' or '.join(formats)}")
    return arn


def needs_of(t: Template, fn: Function, rec: dict) -> list[tuple[str, str, str]]:
    """(operation label, action, resource) for each permission one recorded call needs."""
    service, op, out = rec["service"].lower(), rec["operation"], []
    for target in rec.get("targets") or [{}]:
        if not isinstance(target, dict):
            raise CallError(f"target {target!r} is not an object")
        arn = target_arn(t, fn, target) if target else "*"
        rule = EXCEPTIONS.get((service, op), f"{service}:{op}")
        if isinstance(rule, dict):
            if target.get("part") not in rule:
                raise CallError(f"part {target.get('part')!r} is none of {sorted(map(str, rule))}")
            rule = rule[target.get("part")]
        label = f"{service} {op}" + (f" ({target['part']})" if "part" in target else "")
        out += [(label, a, checked_resource(a, arn)) for a in listify(rule)]
    return out


def wild(pattern: str, text: str, fold: bool) -> bool:
    """IAM wildcard match: * any run, ? one character; actions ignore case, resources do not."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.DOTALL | (re.IGNORECASE if fold else 0)) is not None


def entries(stmt: dict, key: str) -> list[str]:
    """A statement's Action or Resource entries; its NotAction/NotResource counts as one entry."""
    if f"Not{key}" in stmt:
        return [f"Not{key} " + ",".join(listify(stmt[f"Not{key}"]))]
    return [str(x) for x in listify(stmt.get(key, []))]


def hits(stmt: dict, key: str, value: str, fold: bool) -> list[str]:
    if f"Not{key}" in stmt:
        return [] if any(wild(p, value, fold) for p in listify(stmt[f"Not{key}"])) else entries(stmt, key)
    return [p for p in entries(stmt, key) if wild(p, value, fold)]


def judge(grants: list[Grant], used: dict, action: str, arn: str) -> tuple[str | None, list[str]]:
    """(why not granted or None, the statements that allow it); notes in `used` which
    (statement, action entry, resource entry) the call relied on."""
    allow, deny = [], []
    for i, g in enumerate(grants):
        matched = [(a, r) for a in hits(g.stmt, "Action", action, True)
                   for r in hits(g.stmt, "Resource", arn, False)]
        for a, r in matched:
            used[(i, a, r)].add(action)
        if matched:
            (deny if g.stmt["Effect"] == "Deny" else allow).append(g)
    # Conditions are not evaluated: a conditional Deny is taken to apply (the safe side), a
    # conditional Allow grants, marked as such.
    labels = [g.label + (" (if Condition)" if "Condition" in g.stmt else "") for g in allow]
    if deny:
        return "denied by " + ", ".join(g.label for g in deny), labels
    return (None if allow else "not granted"), labels


def prove(template_text: str, call_lines) -> Result:
    t = Template(template_text)
    fns = functions(t)
    grants = {b: role_grants(t, f) for b, f in fns.items()}
    res = Result(fns, {b: [] for b in fns}, [], [])
    used = {b: defaultdict(set) for b in fns}  # (grant index, action entry, resource entry) -> actions
    seen = set()
    for n, line in enumerate(call_lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            b, service, op = rec["function"], rec["service"], rec["operation"]
        except (ValueError, KeyError, TypeError) as err:
            res.failures.append(f"recording line {n}: not a call record ({err})")
            continue
        if b not in fns:
            res.failures.append(f"recording line {n}: function {b!r} is not declared in the template "
                                f"(no function has Metadata.BuildProperties.Binary: {b})")
            continue
        try:
            needs = needs_of(t, fns[b], rec)
        except CallError as err:
            res.failures.append(f"{b}: {service} {op}: {err}")
            res.rows[b].append(Row(f"{service} {op}", "?", "?", f"ERROR: {err}"))
            continue
        for label, action, arn in needs:
            problem, by = judge(grants[b], used[b], action, arn)
            # Object keys differ per job: each is judged, but shown once per folder and verdict.
            if arn.startswith(f"arn:{PARTITION}:s3:::") and arn.count("/") > 1:
                arn = arn.rsplit("/", 1)[0] + "/…"
            if (b, label, action, arn, problem) not in seen:  # lines repeat, and so do parts
                seen.add((b, label, action, arn, problem))
                res.rows[b].append(Row(label, action, arn, problem.upper() if problem else ", ".join(by)))
                if problem:
                    res.failures.append(f"{b}: {label} needs {action} on {arn} — {problem}")
    for b, f in fns.items():
        if not res.rows[b]:
            res.failures.append(f"{b} ({f.logical}): no recorded calls: it must be exercised by the "
                                "suite and its Services built with the recorder")
        unused_grants(b, grants[b], used[b], res)
    return res


def unused_grants(b: str, grants: list[Grant], used: dict, res: Result) -> None:
    """Fails each template grant (action entry x resource entry) no call used, and a wildcard that
    allows more than the calls used; lists the unused actions of SAM's managed policies."""
    for i, g in enumerate(grants):
        if g.stmt["Effect"] != "Allow":
            continue
        idle = []
        for a in entries(g.stmt, "Action"):
            for r in entries(g.stmt, "Resource"):
                acts, where = sorted(used.get((i, a, r), ())), f"{b}: {a} on {r} ({g.label})"
                if not acts:
                    idle.append((a, r))
                elif not g.managed and a.startswith("NotAction"):
                    res.failures.append(f"over-broad grant: {where} allows every other action; "
                                        f"the calls use only {', '.join(acts)}")
                elif not g.managed and ("*" in a or "?" in a):  # policyuniverse expands wildcards
                    known = {x for x in get_actions_from_statement({"Action": a}) if not re.search(r"[*?]", x)}
                    allowed = known | {x.lower() for x in acts}  # its list may lack newer actions
                    if len(allowed) > len(acts):
                        res.failures.append(f"over-broad grant: {where} allows {len(allowed)} "
                                            f"actions; the calls use only {', '.join(acts)}")
        if idle and g.managed:
            acts = ", ".join(sorted({a for a, _ in idle}))
            res.notes.append(f"{b}: {g.label}: {acts} on * (for the Lambda service)")
        elif idle:
            res.failures.extend(f"unused grant: {b}: {a} on {r} ({g.label})" for a, r in idle)


def table(rows: list[Row], markdown: bool) -> list[str]:
    cells = [("operation", "action", "resource", "granted by"), *rows]
    if markdown:
        return ["| " + " | ".join(c) + " |" for c in cells[:1]] + ["|---|---|---|---|"] + \
            [f"| {r.operation} | `{r.action}` | `{r.resource}` | {r.verdict} |" for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return ["  " + "  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip() for c in cells]


def render(res: Result, markdown: bool) -> str:
    head = (lambda s: "## " + s) if markdown else (lambda s: "== " + s)
    bullet = "- " if markdown else "  "
    out = [("# " if markdown else "") + "Permission proof: recorded AWS calls against template.yaml", ""]
    for b, fn in res.functions.items():
        out += [head(f"{b} ({fn.logical}, role {fn.role})"), ""]
        out += (table(res.rows[b], markdown) if res.rows[b] else [bullet + "no recorded calls"]) + [""]
    out += [head("SAM-managed grants no recorded call used (listed, not failed)"), ""]
    out += [bullet + n for n in res.notes] or [bullet + "none"]
    out += ["", head(f"Problems ({len(res.failures)})"), ""]
    out += [bullet + f for f in res.failures] or [bullet + "none"]
    checked = sum(len(r) for r in res.rows.values())
    out += ["", f"FAIL: {len(res.failures)} problem(s)" if res.failures else
            f"PROVEN: {checked} permission(s) of {len(res.functions)} function(s) granted, none unused"]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--template", required=True, type=Path)
    ap.add_argument("--calls", required=True, type=Path, help="JSON lines recorded by the suite")
    ap.add_argument("--report", type=Path, help="also write the result here as Markdown")
    args = ap.parse_args(argv)
    try:
        res = prove(args.template.read_text(), args.calls.read_text().splitlines())
    except (OSError, ProofError) as err:
        print(f"prove: {err}", file=sys.stderr)
        return 2
    print(render(res, markdown=False), end="")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render(res, markdown=True))
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
