"""The IAM policies CloudMover ships are least-privilege: the head node's and the
workers' roles in cloudformation/cloudmover.yaml, and the operators' policy
cloudformation/admin-policy.json.

Every wildcard is refused unless it is listed below with its reason: ``*`` in an
action (``s3:*``, ``ec2:*``, ``s3:Get*``), a ``*`` resource, an ARN whose
resource part is ``*``, and an ARN covering every resource of a type
(``instance/*``) without a condition. Wildcards in an ARN's region are allowed
(CloudMover works in every region), and in its account only in the operators'
policy (a group's policy acts in its own account). The template's intrinsic
functions are evaluated here with sample parameters, so the checks see the
ARNs CloudFormation would write.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cloudformation" / "cloudmover.yaml"
ADMIN_POLICY = ROOT / "cloudformation" / "admin-policy.json"
ACCOUNT, REGION, STACK = "123456789012", "eu-west-2", "CloudMover"
BUCKETS = ["media-in", "media-out"]

# -- the named exceptions -------------------------------------------------------------------

S3_VERBS = "the S3 verbs the issue and the product documentation name (Abort*, Delete*, Get*, List*, Put*)"
WILDCARD_ACTIONS = {   # action -> why; each only on the given buckets (checked below)
    "s3:Abort*": S3_VERBS, "s3:Delete*": S3_VERBS, "s3:Get*": S3_VERBS, "s3:List*": S3_VERBS, "s3:Put*": S3_VERBS,
}
NO_RESOURCE_LEVEL = "the action supports no resource-level permission: AWS requires Resource \"*\""
DESCRIBE = "EC2 Describe calls support no resource-level permissions (the issue names Describe on *)"
STAR_RESOURCE_ACTIONS = {   # action -> why it may have Resource "*"
    "ec2:DescribeAvailabilityZones": DESCRIBE, "ec2:DescribeImages": DESCRIBE,
    "ec2:DescribeInstanceStatus": DESCRIBE, "ec2:DescribeInstanceTypes": DESCRIBE,
    "ec2:DescribeInstances": DESCRIBE, "ec2:DescribeKeyPairs": DESCRIBE, "ec2:DescribeRegions": DESCRIBE,
    "ec2:DescribeSecurityGroups": DESCRIBE, "ec2:DescribeSubnets": DESCRIBE, "ec2:DescribeVpcs": DESCRIBE,
    "ec2:DescribeVpcAttribute": DESCRIBE,
    # the operators' policy (admin-policy.json): launching from the console and watching the head node
    "cloudformation:GetTemplateSummary": NO_RESOURCE_LEVEL, "cloudformation:ListStacks": NO_RESOURCE_LEVEL,
    "cloudformation:ValidateTemplate": NO_RESOURCE_LEVEL, "cloudwatch:GetMetricData": NO_RESOURCE_LEVEL,
    "cloudwatch:GetMetricStatistics": NO_RESOURCE_LEVEL, "cloudwatch:ListMetrics": NO_RESOURCE_LEVEL,
    "servicequotas:ListServiceQuotas": NO_RESOURCE_LEVEL,
}
ACCOUNT_WIDE_ACTIONS = {   # action -> why its ARN's resource part may be "*"
    "sqs:ListQueues": "ListQueues is authorized on the account's queue ARN; the bus lists with the cloudmover- prefix",
}
EXISTING_FOR_LAUNCH = ("RunInstances also authorizes the existing image, subnet, security group, network interface "
                       "and key pair it uses; the instance and volume it creates need the role tag")
TYPE_WIDE = {   # (action, resource type) -> why it may name every resource of the type without a condition
    **{("ec2:RunInstances", kind): EXISTING_FOR_LAUNCH
       for kind in ("image", "subnet", "security-group", "network-interface", "key-pair")},
    ("servicequotas:GetServiceQuota", "ec2"): "the pre-flight check reads the EC2 quota of the needed instance family",
    ("servicequotas:RequestServiceQuotaIncrease", "ec2"): "operators raise EC2 quotas for worker fleets (product docs)",
    ("ec2:CreateKeyPair", "key-pair"): "the product docs have operators create the SSH key pair of the head node",
    ("ec2:ImportKeyPair", "key-pair"): "the product docs have operators create the SSH key pair of the head node",
    ("ec2:CreateSecurityGroup", "security-group"): "the stack creates the head node's group; editing it needs its tag",
    ("ec2:CreateSecurityGroup", "vpc"): "a security group is created in the VPC the operator chooses",
}


# -- evaluating the template's intrinsic functions with sample parameters --------------------

def load_template() -> dict:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return template


def render(value, template: dict):
    """``value`` with Ref, Fn::Sub, Fn::Join, Fn::Split and Fn::GetAtt evaluated as CloudFormation would."""
    if isinstance(value, list):
        return [render(item, template) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
        return {key: render(item, template) for key, item in value.items()}
    (function, argument), = value.items()
    if function == "Ref":
        return _reference(argument, template)
    if function == "Fn::GetAtt":
        return _attribute(*argument, template)
    if function == "Fn::Join":
        return argument[0].join(render(argument[1], template))
    if function == "Fn::Split":
        return render(argument[1], template).split(argument[0])
    if function == "Fn::Sub":
        text, names = (argument, {}) if isinstance(argument, str) else argument
        names = {name: render(item, template) for name, item in names.items()}

        def substitute(match):
            name = match.group(1)
            if name in names:
                return names[name]
            return _attribute(*name.split("."), template) if "." in name else _reference(name, template)
        return re.sub(r"\$\{([^}!]+)\}", substitute, text)
    raise AssertionError(f"no sample evaluation for {function}")


def _reference(name: str, template: dict):
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::StackName": STACK}
    if name in pseudo:
        return pseudo[name]
    if name == "BucketNames":
        return list(BUCKETS)
    if name in template["Parameters"]:
        return f"<{name}>"
    return f"{STACK}-{name}-SAMPLE"


def _attribute(resource: str, attribute: str, template: dict) -> str:
    kind = template["Resources"][resource]["Type"]
    path = template["Resources"][resource]["Properties"].get("Path", "/")
    arn_kind = {"AWS::IAM::Role": "role", "AWS::IAM::InstanceProfile": "instance-profile"}.get(kind)
    assert attribute == "Arn" and arn_kind, f"no sample for {resource}.{attribute}"
    return f"arn:aws:iam::{ACCOUNT}:{arn_kind}{path}{STACK}-{resource}-SAMPLE"


def template_policies() -> dict[str, list[dict]]:
    """Statements of every IAM policy in the template, by ``Role/PolicyName``."""
    template = load_template()
    policies = {}
    for logical, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            policies[logical] = render(resource["Properties"]["PolicyDocument"], template)["Statement"]
        for policy in resource["Properties"].get("Policies", []) if resource["Type"] == "AWS::IAM::Role" else []:
            policies[f"{logical}/{policy['PolicyName']}"] = render(policy["PolicyDocument"], template)["Statement"]
    return policies


def admin_statements() -> list[dict]:
    return json.loads(ADMIN_POLICY.read_text())["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# -- the check -----------------------------------------------------------------------------------

def problems(statements: list[dict], *, any_account: bool) -> list[str]:
    """Every wildcard in ``statements`` that no exception above allows, as one line each."""
    found = []
    for statement in statements:
        sid = statement.get("Sid", "?")
        for element in ("NotAction", "NotResource", "NotPrincipal"):
            if element in statement:
                found.append(f"{sid}: {element} grants everything it does not name")
        if statement.get("Effect") != "Allow":
            continue
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        for action in actions:
            if "*" in action and action not in WILDCARD_ACTIONS:
                found.append(f"{sid}: wildcard action {action}")
            elif "*" in action and not all(_is_given_bucket(r) for r in resources):
                found.append(f"{sid}: {action} on {resources}, not only the given buckets and their objects")
        for resource in resources:
            found += [f"{sid}: {p}" for p in _resource_problems(resource, actions, statement, any_account)]
    return found


def _is_given_bucket(resource: str) -> bool:
    return any(resource in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*") for b in BUCKETS)


def _resource_problems(resource: str, actions: list[str], statement: dict, any_account: bool) -> list[str]:
    if resource == "*":
        return [f"{a} on Resource *" for a in actions if a not in STAR_RESOURCE_ACTIONS]
    parts = resource.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return [f"{resource} is not an ARN"]
    _, _, service, _, account, name = parts
    if service == "s3":
        return [] if _is_given_bucket(resource) else [f"{resource} is not one of the given buckets"]
    if account not in (ACCOUNT, "") and not (any_account and account == "*"):
        return [f"{resource}: account {account!r}"]
    if name == "*":
        return [f"{a} on every resource of {service}" for a in actions if a not in ACCOUNT_WIDE_ACTIONS]
    if "/" not in name:   # a name (queue, topic): a wildcard only after a fixed prefix such as cloudmover-
        return [f"{resource}: wildcard name"] if name.startswith("*") else []
    kind, _, rest = name.partition("/")
    if "*" in kind:
        return [f"{resource}: wildcard resource type"]
    if rest == "*" and "Condition" not in statement:
        return [f"{a} on every {kind}, unconditionally" for a in actions if (a, kind) not in TYPE_WIDE]
    return []


# -- the policies --------------------------------------------------------------------------------

def test_template_has_the_two_roles_policies():
    assert sorted(template_policies()) == ["HeadNodeRole/cloudmover-headnode", "WorkerRole/cloudmover-worker"]


@pytest.mark.parametrize("name", sorted(template_policies()))
def test_template_policy_has_no_wildcard_the_issue_does_not_name(name):
    assert problems(template_policies()[name], any_account=False) == []


def test_admin_policy_has_no_wildcard_the_issue_does_not_name():
    assert problems(admin_statements(), any_account=True) == []


def _statements_with(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if action in as_list(s["Action"])]


CREATED_BY_LAUNCH = ("instance", "volume")


@pytest.mark.parametrize("policy, role", [("HeadNodeRole/cloudmover-headnode", "worker"), ("admin", "headnode")])
def test_run_and_terminate_instances_carry_the_role_tag_condition(policy, role):
    statements = admin_statements() if policy == "admin" else template_policies()[policy]
    runs = _statements_with(statements, "ec2:RunInstances")
    creating = [s for s in runs if any(r.split(":")[5].split("/")[0] in CREATED_BY_LAUNCH
                                       for r in as_list(s["Resource"]))]
    assert creating, "no statement lets RunInstances create the instance"
    for statement in creating:
        assert statement["Condition"] == {"StringEquals": {"aws:RequestTag/cloudmover:role": role}}
        assert {r.split(":")[5] for r in as_list(statement["Resource"])} == {"instance/*", "volume/*"}
    terminates = _statements_with(statements, "ec2:TerminateInstances")
    assert terminates
    for statement in terminates:
        assert statement["Condition"]["StringEquals"]["ec2:ResourceTag/cloudmover:role"] == role
    for statement in _statements_with(statements, "ec2:CreateTags"):
        assert statement.get("Condition"), f"{statement['Sid']}: CreateTags without a condition"


def test_head_node_passes_only_the_worker_role_to_ec2():
    passes = _statements_with(template_policies()["HeadNodeRole/cloudmover-headnode"], "iam:PassRole")
    assert len(passes) == 1
    assert passes[0]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/cloudmover/{STACK}-WorkerRole-SAMPLE"
    assert passes[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert all(not a.startswith("iam:") for s in template_policies()["WorkerRole/cloudmover-worker"]
               for a in as_list(s["Action"]))


def test_workers_cannot_launch_pass_or_remove_anything():
    actions = {a for s in template_policies()["WorkerRole/cloudmover-worker"] for a in as_list(s["Action"])}
    assert not {a for a in actions if a.split(":")[0] in ("ec2", "iam", "servicequotas")}
    # from SSM a worker only reads its sealing key, under /cloudmover/
    ssm = [s for s in template_policies()["WorkerRole/cloudmover-worker"]
           if any(a.startswith("ssm:") for a in as_list(s["Action"]))]
    assert [as_list(s["Action"]) for s in ssm] == [["ssm:GetParameter"]]
    assert all(r.endswith(":parameter/cloudmover/*") for s in ssm for r in as_list(s["Resource"]))
    assert not {a for a in actions if a.startswith(("sqs:DeleteQueue", "sqs:Purge", "sqs:AddPermission", "sns:"))} \
        - {"sns:Publish"}


def test_queues_and_topic_are_cloudmovers_own():
    for name, statements in template_policies().items():
        for statement in statements:
            for resource in as_list(statement["Resource"]):
                if resource.startswith(("arn:aws:sqs:", "arn:aws:sns:")) and resource.split(":")[5] != "*":
                    assert resource.split(":")[5] == "cloudmover-*", (name, resource)


# -- the check catches what it is for ------------------------------------------------------------

BAD = {
    "s3:*": {"Action": "s3:*", "Resource": "arn:aws:s3:::media-in/*"},
    "ec2:*": {"Action": "ec2:*", "Resource": "*"},
    "any action": {"Action": "*", "Resource": "*"},
    "Get* on every bucket": {"Action": "s3:Get*", "Resource": "arn:aws:s3:::*"},
    "object verbs on another bucket": {"Action": "s3:Put*", "Resource": "arn:aws:s3:::someone-else/*"},
    "star resource": {"Action": "sqs:SendMessage", "Resource": "*"},
    "every queue": {"Action": "sqs:SendMessage", "Resource": f"arn:aws:sqs:*:{ACCOUNT}:*"},
    "untagged launch": {"Action": "ec2:RunInstances", "Resource": f"arn:aws:ec2:*:{ACCOUNT}:instance/*"},
    "terminate anything": {"Action": "ec2:TerminateInstances", "Resource": f"arn:aws:ec2:*:{ACCOUNT}:instance/*"},
    "any account": {"Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:*:*:cloudmover-*"},
    "NotAction": {"NotAction": "iam:*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::media-in/*"},
    "any topic": {"Action": "sns:Publish", "Resource": f"arn:aws:sns:*:{ACCOUNT}:*-events"},
    "any role": {"Action": "iam:PassRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"},
    "any type": {"Action": "ec2:StopInstances", "Resource": f"arn:aws:ec2:*:{ACCOUNT}:*/i-0123"},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_check_refuses(case):
    assert problems([dict(BAD[case], Sid=case, Effect="Allow")], any_account=False)
