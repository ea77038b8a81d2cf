#!/usr/bin/env python3
"""The permission proof can fail: small templates and recordings, each with a known verdict.

  python scripts/permissions/test_prove.py      (plain asserts; pytest collects it too)

Runs with the tools venv (scripts/tools.sh all), like prove.py itself.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ beside the script in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import prove  # noqa: E402

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/Table"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:Queue"
BUCKET = "arn:aws:s3:::Bucket"
ENV = {"TABLE": {"Ref": "Table"}, "QUEUE_URL": {"Ref": "Queue"}, "BUCKET": {"Ref": "Bucket"}}


def function(binary: str, statements: list, events: dict | None = None) -> dict:
    """A SAM function as template.yaml declares them; JSON is YAML, so no indentation games."""
    props = {"CodeUri": ".", "Handler": "bootstrap", "Runtime": "provided.al2023",
             "Environment": {"Variables": ENV}}
    if statements:
        props["Policies"] = [{"Statement": statements}]
    if events:
        props["Events"] = events
    return {"Type": "AWS::Serverless::Function",
            "Metadata": {"BuildMethod": "rust-cargolambda", "BuildProperties": {"Binary": binary}},
            "Properties": props}


def template(**functions: dict) -> str:
    resources = {"Table": {"Type": "AWS::DynamoDB::Table"}, "Queue": {"Type": "AWS::SQS::Queue"},
                 "Bucket": {"Type": "AWS::S3::Bucket"}}
    return json.dumps({"AWSTemplateFormatVersion": "2010-09-09",
                       "Transform": "AWS::Serverless-2016-10-31",
                       "Resources": {**resources, **functions}})


def allow(actions, resource) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


def call(fn: str, service: str, operation: str, *targets: dict) -> str:
    return json.dumps({"function": fn, "service": service, "operation": operation,
                       "targets": list(targets)})


def table(**extra) -> dict:
    return {"table": "${ENV:TABLE}", **extra}


def obj(key: str) -> dict:
    return {"bucket": "${ENV:BUCKET}", "key": key}


def failures(tpl: str, *lines: str) -> list[str]:
    return prove.prove(tpl, lines).failures


def test_a_missing_grant_is_reported():
    tpl = template(Worker=function("worker", [allow(["dynamodb:GetItem"], {"Fn::GetAtt": "Table.Arn"})]))
    got = failures(tpl, call("worker", "dynamodb", "GetItem", table()),
                   call("worker", "dynamodb", "UpdateItem", table()))
    assert got == [f"worker: dynamodb UpdateItem needs dynamodb:UpdateItem on {TABLE} — not granted"], got


def test_b_an_unused_explicit_grant_is_reported():
    tpl = template(Worker=function("worker", [
        allow(["dynamodb:GetItem", "dynamodb:DeleteItem"], {"Fn::GetAtt": ["Table", "Arn"]})]))
    got = failures(tpl, call("worker", "dynamodb", "GetItem", table()))
    assert got == [f"unused grant: worker: dynamodb:DeleteItem on {TABLE} (WorkerRolePolicy0 #0)"], got


def test_c_a_wildcard_grant_covers_upload_part_but_is_flagged_as_broad():
    tpl = template(Worker=function("worker", [allow("s3:*", {"Fn::Sub": "${Bucket.Arn}/*"})]))
    res = prove.prove(tpl, [call("worker", "s3", "UploadPart", obj("artifacts/x"))])
    assert [(r.action, r.resource, r.verdict) for r in res.rows["worker"]] == \
        [("s3:PutObject", f"{BUCKET}/artifacts/…", "WorkerRolePolicy0 #0")], res.rows
    assert not [f for f in res.failures if "not granted" in f], res.failures
    assert len(res.failures) == 1 and res.failures[0].startswith(
        f"over-broad grant: worker: s3:* on {BUCKET}/* (WorkerRolePolicy0 #0) allows "), res.failures
    assert res.failures[0].endswith("the calls use only s3:PutObject"), res.failures


def test_d_a_deny_wins_over_an_allow():
    tpl = template(Worker=function("worker", [
        allow("s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/*"}),
        {"Effect": "Deny", "Action": "s3:Put*", "Resource": {"Fn::Sub": "${Bucket.Arn}/private/*"}}]))
    got = failures(tpl, call("worker", "s3", "PutObject", obj("artifacts/x")),
                   call("worker", "s3", "PutObject", obj("private/y")))
    assert got == [f"worker: s3 PutObject needs s3:PutObject on {BUCKET}/private/… — "
                   "denied by WorkerRolePolicy0 #1"], got


def test_e_a_transaction_needs_the_action_of_each_part():
    put_update = call("initiate", "dynamodb", "TransactWriteItems", table(part="Put"),
                      table(part="Update"))
    only_put = template(Initiate=function("initiate", [allow("dynamodb:PutItem", {"Fn::GetAtt": "Table.Arn"})]))
    got = failures(only_put, put_update)
    assert got == [f"initiate: dynamodb TransactWriteItems (Update) needs dynamodb:UpdateItem on "
                   f"{TABLE} — not granted"], got
    both = template(Initiate=function("initiate", [
        allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], {"Fn::GetAtt": "Table.Arn"})]))
    assert failures(both, put_update) == []


def test_f_a_function_without_recorded_calls_fails():
    tpl = template(Worker=function("worker", [allow("sqs:SendMessage", {"Fn::GetAtt": "Queue.Arn"})]),
                   Cleanup=function("cleanup", []))
    got = failures(tpl, call("worker", "sqs", "SendMessage", {"queue": "${ENV:QUEUE_URL}"}))
    assert got == ["cleanup (Cleanup): no recorded calls: it must be exercised by the suite and its "
                   "Services built with the recorder"], got


def test_g_an_sqs_event_adds_receive_message_through_the_managed_policy():
    events = {"Jobs": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": "Queue.Arn"}}}}
    tpl = template(Worker=function("worker", [], events))
    res = prove.prove(tpl, [call("worker", "sqs", "ReceiveMessage", {"queue": "${ENV:QUEUE_URL}"})])
    assert res.failures == [], res.failures
    assert res.rows["worker"][0].verdict == "AWSLambdaSQSQueueExecutionRole", res.rows
    # What SAM adds and our code does not use is listed, not failed.
    assert any(n.startswith("worker: AWSLambdaSQSQueueExecutionRole: logs:") for n in res.notes), res.notes


def test_undeclared_functions_and_resources_fail():
    tpl = template(Worker=function("worker", [allow("s3:GetObject", {"Fn::Sub": "${Bucket.Arn}/*"})]))
    got = failures(tpl, call("worker", "s3", "GetObject", obj("a/b")),
                   call("worker", "s3", "GetObject", {"bucket": "some-other-bucket", "key": "a/b"}),
                   call("worker", "s3", "GetObject", {"bucket": "${ENV:NOT_SET}", "key": "a/b"}),
                   call("ghost", "s3", "GetObject", obj("a/b")))
    assert len(got) == 3, got
    assert "resource the template does not declare" in got[0] and "some-other-bucket" in got[0], got
    assert "no environment variable NOT_SET" in got[1], got
    assert "function 'ghost' is not declared in the template" in got[2], got


def test_a_bucket_action_on_an_object_arn_is_caught():
    tpl = template(Worker=function("worker", [allow("s3:ListBucket", {"Fn::GetAtt": "Bucket.Arn"})]))
    got = failures(tpl, call("worker", "s3", "ListObjectsV2", {"bucket": "${ENV:BUCKET}"}),
                   call("worker", "s3", "ListObjectsV2", obj("artifacts/x")))
    assert len(got) == 1 and f"{BUCKET}/artifacts/x fits none of s3:ListBucket's" in got[0], got


def test_list_parts_is_its_own_action():
    tpl = template(Worker=function("worker", [allow("s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/*"})]))
    got = failures(tpl, call("worker", "s3", "UploadPart", obj("k/1")),
                   call("worker", "s3", "ListParts", obj("k/1")))
    assert got == [f"worker: s3 ListParts needs s3:ListMultipartUploadParts on {BUCKET}/k/… — "
                   "not granted"], got


def test_head_object_needs_get_object():
    """A finished upload is recognised by HeadObject, which IAM grants as s3:GetObject."""
    tpl = template(Worker=function("worker", [allow("s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/*"})]))
    got = failures(tpl, call("worker", "s3", "PutObject", obj("k/1")),
                   call("worker", "s3", "HeadObject", obj("k/1")))
    assert got == [f"worker: s3 HeadObject needs s3:GetObject on {BUCKET}/k/… — not granted"], got
    granted = template(Worker=function("worker", [
        allow(["s3:PutObject", "s3:GetObject"], {"Fn::Sub": "${Bucket.Arn}/*"})]))
    assert failures(granted, call("worker", "s3", "PutObject", obj("k/1")),
                    call("worker", "s3", "HeadObject", obj("k/1"))) == []


def main() -> int:
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]
    failed = 0
    for name, test in tests:
        try:
            test()
            print(f"ok   {name}")
        except Exception:  # noqa: BLE001 - report every test, then the count
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
