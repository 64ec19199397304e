//! Bucket policies: the subset of the AWS policy language S3 users write, parsed and checked
//! when stored (anything this evaluator cannot honour is refused as `MalformedPolicy`, never
//! ignored), and evaluated per request as AWS does within an account: an explicit Deny
//! wins, then an Allow from a grant or the policy, and otherwise the request is denied.
//!
//! Supported: `Version`, `Id`, `Statement` (one or a list) with `Sid`, `Effect`,
//! `Principal` (`"*"`, `{"AWS": "*"}`, `{"AWS": [...]}` naming configured access keys, or
//! `arn:aws:iam::<account>:user/<access key>`), `Action` (`s3:*`, `s3:Get*`, exact names),
//! `Resource` (`arn:aws:s3:::bucket` and `arn:aws:s3:::bucket/<key pattern>`, `*` and `?`
//! wildcards) and `Condition` with the operators `StringEquals`, `StringNotEquals`,
//! `StringEqualsIgnoreCase`, `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`,
//! `Bool`, `IpAddress`, `NotIpAddress` and `Null` on the keys `aws:SecureTransport`,
//! `aws:SourceIp`, `s3:prefix`, `s3:ExistingObjectTag/<tag>` and the server-side encryption
//! headers `s3:x-amz-server-side-encryption`, `s3:x-amz-server-side-encryption-aws-kms-key-id`
//! and `s3:x-amz-server-side-encryption-customer-algorithm`, and the request headers
//! `s3:x-amz-copy-source`, `s3:x-amz-metadata-directive`, `s3:x-amz-acl`, `s3:x-amz-grant-*`
//! and `s3:x-amz-storage-class`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use serde_json::{Map, Value};

/// The name of the bucket configuration document holding a bucket's policy.
pub const DOCUMENT: &str = "policy";

/// AWS's limit on a bucket policy's size.
pub const MAX_SIZE: usize = 20 * 1024;

/// A policy that cannot be stored, with AWS's message for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn malformed<T>(message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(message.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
enum Principals {
    /// `"*"`: everyone, anonymous requests included.
    Anyone,
    /// Access keys.
    Keys(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Bool,
    IpAddress,
    NotIpAddress,
    /// `"true"`: the key is absent from the request; `"false"`: it is present.
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        Some(match name {
            "StringEquals" => Operator::StringEquals,
            "StringNotEquals" => Operator::StringNotEquals,
            "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
            "StringLike" => Operator::StringLike,
            "StringNotLike" => Operator::StringNotLike,
            "Bool" => Operator::Bool,
            "IpAddress" => Operator::IpAddress,
            "NotIpAddress" => Operator::NotIpAddress,
            "Null" => Operator::Null,
            _ => return None,
        })
    }

    /// Negated operators hold when the key is absent from the request, as on AWS.
    fn negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NotIpAddress
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ConditionKey {
    SecureTransport,
    SourceIp,
    Prefix,
    ExistingObjectTag(String),
    /// `s3:x-amz-server-side-encryption`
    ServerSideEncryption,
    /// `s3:x-amz-server-side-encryption-aws-kms-key-id`
    KmsKeyId,
    /// `s3:x-amz-server-side-encryption-customer-algorithm`
    CustomerAlgorithm,
    /// Another request header the condition key names (`s3:x-amz-copy-source`,
    /// `s3:x-amz-metadata-directive`, `s3:x-amz-acl`, `s3:x-amz-grant-*`, ...): one of
    /// [`HEADER_KEYS`], lower case.
    Header(&'static str),
}

/// The request headers condition keys read besides [`HEADER_KEYS`]: `aws:Referer`.
pub const AWS_HEADER_KEYS: [&str; 1] = ["referer"];

/// The request headers that are condition keys as `s3:<header>`, beside the SSE ones
/// (`s3:if-match` and `s3:if-none-match` let a policy require conditional writes and
/// deletes, as AWS documents).
pub const HEADER_KEYS: [&str; 11] = [
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "x-amz-acl",
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
    "x-amz-storage-class",
    "if-match",
    "if-none-match",
];

impl ConditionKey {
    fn parse(name: &str) -> Option<ConditionKey> {
        // Condition keys are case-insensitive; the tag name after the slash is not.
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_str() {
            "aws:securetransport" => ConditionKey::SecureTransport,
            "aws:sourceip" => ConditionKey::SourceIp,
            "aws:referer" => ConditionKey::Header("referer"),
            "s3:prefix" => ConditionKey::Prefix,
            "s3:x-amz-server-side-encryption" => ConditionKey::ServerSideEncryption,
            "s3:x-amz-server-side-encryption-aws-kms-key-id" => ConditionKey::KmsKeyId,
            "s3:x-amz-server-side-encryption-customer-algorithm" => ConditionKey::CustomerAlgorithm,
            _ if lower
                .strip_prefix("s3:")
                .is_some_and(|h| HEADER_KEYS.contains(&h)) =>
            {
                let h = &lower["s3:".len()..];
                ConditionKey::Header(HEADER_KEYS.iter().find(|k| **k == h)?)
            }
            _ if lower.starts_with("s3:existingobjecttag/") => {
                let tag = &name["s3:ExistingObjectTag/".len()..];
                if tag.is_empty() {
                    return None;
                }
                ConditionKey::ExistingObjectTag(tag.to_owned())
            }
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    Strings(Vec<String>),
    Bool(bool),
    Networks(Vec<IpNet>),
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    operator: Operator,
    /// `...IfExists`: the condition also holds when the request has no value for the key.
    if_exists: bool,
    key: ConditionKey,
    values: Values,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    effect: Effect,
    principals: Principals,
    /// Lowercase patterns (`s3:get*`).
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed, checked bucket policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
    /// RestrictPublicBuckets is in effect on a public policy: what it allows anyone, it
    /// allows signed requests only.
    restricted: bool,
}

/// The request as the policy sees it.
#[derive(Debug, Clone, Default)]
pub struct RequestContext<'a> {
    /// The verified access key; `None` for an anonymous request.
    pub principal: Option<&'a str>,
    /// `s3:GetObject`.
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: String,
    pub secure: bool,
    pub source_ip: Option<IpAddr>,
    /// The `prefix` of a listing, when given.
    pub prefix: Option<&'a str>,
    /// The tags of the object the request reads or changes, when it exists.
    pub object_tags: Option<&'a [(String, String)]>,
    /// The request's server-side encryption headers.
    pub encryption: EncryptionHeaders<'a>,
}

/// The headers of a request that are condition keys: the SSE ones
/// (`s3:x-amz-server-side-encryption*`), and the others of [`HEADER_KEYS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EncryptionHeaders<'a> {
    pub server_side_encryption: Option<&'a str>,
    pub kms_key_id: Option<&'a str>,
    pub customer_algorithm: Option<&'a str>,
    /// The request's headers among [`HEADER_KEYS`] (names lower case; `x-amz-copy-source` as
    /// `bucket/key`, decoded, without a leading `/`).
    pub others: &'a [(&'a str, &'a str)],
}

/// What the policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it (and none denies it).
    Allow,
    /// A statement denies it: nothing else can allow it.
    Deny,
    /// No statement applies.
    NoOpinion,
}

/// S3 actions a statement may name (besides wildcards).
const ACTIONS: &[&str] = &[
    "s3:AbortMultipartUpload",
    "s3:BypassGovernanceRetention",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketOwnershipControls",
    "s3:DeleteBucketPolicy",
    "s3:DeleteObject",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectVersionTagging",
    "s3:GetBucketAcl",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketLocation",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketVersioning",
    "s3:GetObject",
    "s3:GetObjectAcl",
    "s3:GetObjectAttributes",
    "s3:GetObjectLegalHold",
    "s3:GetObjectRetention",
    "s3:GetObjectTagging",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectVersionTagging",
    "s3:GetReplicationConfiguration",
    "s3:ListAllMyBuckets",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:ListMultipartUploadParts",
    "s3:PutBucketAcl",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectVersionTagging",
    "s3:PutReplicationConfiguration",
    "s3:ReplicateDelete",
    "s3:ReplicateObject",
    "s3:ReplicateTags",
];

/// The policy action of an S3 operation; `versioned`: the request names a version id.
/// `None` for operations that are not about a bucket (ListBuckets is `s3:ListAllMyBuckets`,
/// which a bucket policy cannot grant).
pub fn action_of(operation: &str, versioned: bool) -> Option<&'static str> {
    Some(match (operation, versioned) {
        ("GetObject" | "HeadObject", false) => "s3:GetObject",
        ("GetObject" | "HeadObject", true) => "s3:GetObjectVersion",
        ("GetObjectAttributes", false) => "s3:GetObjectAttributes",
        ("GetObjectAttributes", true) => "s3:GetObjectVersionAttributes",
        ("GetObjectTagging", false) => "s3:GetObjectTagging",
        ("GetObjectTagging", true) => "s3:GetObjectVersionTagging",
        ("PutObjectTagging", false) => "s3:PutObjectTagging",
        ("PutObjectTagging", true) => "s3:PutObjectVersionTagging",
        ("DeleteObjectTagging", false) => "s3:DeleteObjectTagging",
        ("DeleteObjectTagging", true) => "s3:DeleteObjectVersionTagging",
        ("GetObjectAcl", false) => "s3:GetObjectAcl",
        ("GetObjectAcl", true) => "s3:GetObjectVersionAcl",
        ("PutObjectAcl", false) => "s3:PutObjectAcl",
        ("PutObjectAcl", true) => "s3:PutObjectVersionAcl",
        ("DeleteObject" | "DeleteObjects", false) => "s3:DeleteObject",
        ("DeleteObject" | "DeleteObjects", true) => "s3:DeleteObjectVersion",
        (
            "PutObject"
            | "CopyObject"
            | "CreateMultipartUpload"
            | "UploadPart"
            | "UploadPartCopy"
            | "CompleteMultipartUpload",
            _,
        ) => "s3:PutObject",
        ("AbortMultipartUpload", _) => "s3:AbortMultipartUpload",
        ("ListParts", _) => "s3:ListMultipartUploadParts",
        ("ListMultipartUploads", _) => "s3:ListBucketMultipartUploads",
        ("ListObjects" | "ListObjectsV2" | "HeadBucket", _) => "s3:ListBucket",
        ("ListObjectVersions", _) => "s3:ListBucketVersions",
        ("GetBucketLocation", _) => "s3:GetBucketLocation",
        ("GetBucketVersioning", _) => "s3:GetBucketVersioning",
        ("PutBucketVersioning", _) => "s3:PutBucketVersioning",
        ("GetBucketPolicy", _) => "s3:GetBucketPolicy",
        ("PutBucketPolicy", _) => "s3:PutBucketPolicy",
        ("DeleteBucketPolicy", _) => "s3:DeleteBucketPolicy",
        ("GetBucketPolicyStatus", _) => "s3:GetBucketPolicyStatus",
        ("GetBucketReplication", _) => "s3:GetReplicationConfiguration",
        ("PutBucketReplication" | "DeleteBucketReplication", _) => "s3:PutReplicationConfiguration",
        ("GetBucketAcl", _) => "s3:GetBucketAcl",
        ("PutBucketAcl", _) => "s3:PutBucketAcl",
        ("GetBucketOwnershipControls", _) => "s3:GetBucketOwnershipControls",
        ("PutBucketOwnershipControls" | "DeleteBucketOwnershipControls", _) => {
            "s3:PutBucketOwnershipControls"
        }
        ("GetObjectRetention", _) => "s3:GetObjectRetention",
        ("PutObjectRetention", _) => "s3:PutObjectRetention",
        ("GetObjectLegalHold", _) => "s3:GetObjectLegalHold",
        ("PutObjectLegalHold", _) => "s3:PutObjectLegalHold",
        ("GetObjectLockConfiguration", _) => "s3:GetBucketObjectLockConfiguration",
        ("PutObjectLockConfiguration", _) => "s3:PutBucketObjectLockConfiguration",
        ("GetPublicAccessBlock", _) => "s3:GetBucketPublicAccessBlock",
        ("PutPublicAccessBlock" | "DeletePublicAccessBlock", _) => "s3:PutBucketPublicAccessBlock",
        ("GetBucketEncryption", _) => "s3:GetEncryptionConfiguration",
        ("PutBucketEncryption" | "DeleteBucketEncryption", _) => "s3:PutEncryptionConfiguration",
        ("CreateBucket", _) => "s3:CreateBucket",
        ("DeleteBucket", _) => "s3:DeleteBucket",
        _ => return None,
    })
}

/// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
pub fn resource_of(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("arn:aws:s3:::{bucket}/{key}"),
        None => format!("arn:aws:s3:::{bucket}"),
    }
}

impl Policy {
    /// Parses and checks a policy for `bucket`; `is_user` says whether an access key is a
    /// configured user (principals must name real users).
    pub fn parse(
        text: &str,
        bucket: &str,
        is_user: &dyn Fn(&str) -> bool,
    ) -> Result<Policy, PolicyError> {
        if text.len() > MAX_SIZE {
            return malformed(format!(
                "Policies must be at most {MAX_SIZE} bytes; this one is {}",
                text.len()
            ));
        }
        let doc: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(e) => return malformed(format!("This policy contains invalid Json: {e}")),
        };
        let Value::Object(doc) = doc else {
            return malformed("The policy must be a JSON object");
        };
        for field in doc.keys() {
            if !matches!(field.as_str(), "Version" | "Id" | "Statement") {
                return malformed(format!("Unknown field {field}"));
            }
        }
        match doc.get("Version") {
            None => {}
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(v) => return malformed(format!("Invalid policy version {v}")),
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return malformed("Missing required field Statement"),
        };
        if statements.is_empty() {
            return malformed("Missing required field Statement");
        }
        let statements = statements
            .into_iter()
            .map(|s| match s {
                Value::Object(s) => parse_statement(s, bucket, is_user),
                _ => malformed("Each statement must be a JSON object"),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            statements,
            restricted: false,
        })
    }

    /// Explicit Deny first, then Allow, else no opinion.
    pub fn evaluate(&self, request: &RequestContext<'_>) -> Decision {
        let mut allowed = false;
        for s in self.statements.iter().filter(|s| s.applies(request)) {
            match s.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow
                    if self.restricted
                        && request.principal.is_none()
                        && s.principals == Principals::Anyone => {}
                Effect::Allow => allowed = true,
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    /// The bucket's public access block restricts public buckets (`RestrictPublicBuckets`):
    /// if this policy is public, its statements for anyone stop applying to anonymous
    /// requests.
    pub fn restrict_public(&mut self) {
        self.restricted = self.is_public();
    }

    /// Whether evaluating needs the tags of the object a request is about.
    pub fn needs_object_tags(&self) -> bool {
        self.statements.iter().any(|s| {
            s.conditions
                .iter()
                .any(|c| matches!(c.key, ConditionKey::ExistingObjectTag(_)))
        })
    }

    /// Public, as GetBucketPolicyStatus reports it: some statement allows anyone without a
    /// condition restricting where the request comes from.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && s.principals == Principals::Anyone
                && !s.conditions.iter().any(|c| c.key == ConditionKey::SourceIp)
        })
    }
}

fn strings(value: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    let list = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => malformed(format!("{field} must hold strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => return malformed(format!("{field} must be a string or a list of strings")),
    };
    Ok(list)
}

fn parse_statement(
    s: &Map<String, Value>,
    bucket: &str,
    is_user: &dyn Fn(&str) -> bool,
) -> Result<Statement, PolicyError> {
    for field in s.keys() {
        match field.as_str() {
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition" => {}
            "NotPrincipal" | "NotAction" | "NotResource" => {
                return malformed(format!("{field} is not supported; write the positive form"))
            }
            _ => return malformed(format!("Unknown field {field}")),
        }
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => return malformed(format!("Invalid effect: {other}")),
        None => return malformed("Missing required field Effect"),
    };
    let principals = match s.get("Principal") {
        None => return malformed("Missing required field Principal"),
        Some(Value::String(p)) if p == "*" => Principals::Anyone,
        Some(Value::Object(p)) => {
            if p.keys().any(|k| k != "AWS") {
                return malformed("Invalid principal in policy: only AWS principals are supported");
            }
            let Some(aws) = p.get("AWS") else {
                // `"Principal": {}`: valid JSON, no principal.
                return malformed("Invalid principal in policy");
            };
            let names = strings(aws, "Principal")?;
            if names.iter().any(|n| n == "*") {
                Principals::Anyone
            } else {
                let mut keys = Vec::new();
                for name in names {
                    let key = name
                        .strip_prefix("arn:aws:iam::")
                        .and_then(|rest| rest.split_once(":user/"))
                        .map_or(name.as_str(), |(_, user)| user);
                    if !is_user(key) {
                        return malformed(format!("Invalid principal in policy: {name}"));
                    }
                    keys.push(key.to_owned());
                }
                Principals::Keys(keys)
            }
        }
        Some(_) => return malformed("Invalid principal in policy"),
    };
    let Some(actions) = s.get("Action") else {
        return malformed("Missing required field Action");
    };
    let actions = strings(actions, "Action")?;
    for action in &actions {
        let known = action == "*"
            || action.to_ascii_lowercase().starts_with("s3:")
                && (action.contains(['*', '?'])
                    || ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action)));
        if !known {
            return malformed(format!("Policy has invalid action: {action}"));
        }
    }
    let Some(resources) = s.get("Resource") else {
        return malformed("Missing required field Resource");
    };
    let resources = strings(resources, "Resource")?;
    for resource in &resources {
        let Some(path) = resource.strip_prefix("arn:aws:s3:::") else {
            return malformed(format!("Policy has invalid resource: {resource}"));
        };
        let named = path.split('/').next().unwrap_or_default();
        if !glob(named, bucket) {
            return malformed(format!(
                "Policy has invalid resource: {resource} is not in bucket {bucket}"
            ));
        }
    }
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(ops)) => parse_conditions(ops)?,
        Some(_) => return malformed("Condition must be a JSON object"),
    };
    Ok(Statement {
        effect,
        principals,
        actions: actions.iter().map(|a| a.to_ascii_lowercase()).collect(),
        resources,
        conditions,
    })
}

fn parse_conditions(ops: &Map<String, Value>) -> Result<Vec<Condition>, PolicyError> {
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let (base, if_exists) = match op_name.strip_suffix("IfExists") {
            Some(base) if base != "Null" => (base, true),
            _ => (op_name.as_str(), false),
        };
        let Some(operator) = Operator::parse(base) else {
            return malformed(format!("Unsupported condition operator: {op_name}"));
        };
        let Value::Object(keys) = keys else {
            return malformed(format!("Condition {op_name} must be a JSON object"));
        };
        for (key_name, value) in keys {
            let Some(key) = ConditionKey::parse(key_name) else {
                return malformed(format!(
                    "Unsupported condition key: {key_name} (supported: aws:SecureTransport, aws:SourceIp, aws:Referer, s3:prefix, s3:ExistingObjectTag/<tag>, s3:x-amz-server-side-encryption, s3:x-amz-server-side-encryption-aws-kms-key-id, s3:x-amz-server-side-encryption-customer-algorithm, s3:x-amz-copy-source, s3:x-amz-metadata-directive, s3:x-amz-acl, s3:x-amz-grant-*, s3:x-amz-storage-class, s3:if-match, s3:if-none-match)"
                ));
            };
            let values = match (&key, operator) {
                (_, Operator::Null) => Values::Bool(bool_value(value, key_name)?),
                (ConditionKey::SecureTransport, Operator::Bool) => {
                    Values::Bool(bool_value(value, key_name)?)
                }
                (ConditionKey::SourceIp, Operator::IpAddress | Operator::NotIpAddress) => {
                    let mut nets = Vec::new();
                    for text in strings(value, key_name)? {
                        let net = text
                            .parse::<IpNet>()
                            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                            .map_err(|_| {
                                PolicyError(format!("Invalid IP address or range: {text}"))
                            })?;
                        nets.push(net);
                    }
                    Values::Networks(nets)
                }
                (
                    ConditionKey::Prefix
                    | ConditionKey::ExistingObjectTag(_)
                    | ConditionKey::ServerSideEncryption
                    | ConditionKey::KmsKeyId
                    | ConditionKey::CustomerAlgorithm
                    | ConditionKey::Header(_),
                    Operator::StringEquals
                    | Operator::StringNotEquals
                    | Operator::StringEqualsIgnoreCase
                    | Operator::StringNotEqualsIgnoreCase
                    | Operator::StringLike
                    | Operator::StringNotLike,
                ) => Values::Strings(strings(value, key_name)?),
                _ => {
                    return malformed(format!(
                        "Condition operator {op_name} cannot be used with {key_name}"
                    ))
                }
            };
            out.push(Condition {
                operator,
                if_exists,
                key,
                values,
            });
        }
    }
    Ok(out)
}

impl Statement {
    fn applies(&self, r: &RequestContext<'_>) -> bool {
        let principal = match (&self.principals, r.principal) {
            (Principals::Anyone, _) => true,
            (Principals::Keys(keys), Some(p)) => keys.iter().any(|k| k == p),
            (Principals::Keys(_), None) => false,
        };
        let action = r.action.to_ascii_lowercase();
        principal
            && self.actions.iter().any(|a| glob(a, &action))
            && self.resources.iter().any(|res| glob(res, &r.resource))
            && self.conditions.iter().all(|c| c.holds(r))
    }
}

/// A condition's one boolean value: JSON `true`/`false` or the string `"true"`/`"false"`.
fn bool_value(value: &Value, key_name: &str) -> Result<bool, PolicyError> {
    let text = match value {
        Value::Bool(b) => b.to_string(),
        _ => {
            let list = strings(value, key_name)?;
            if list.len() != 1 {
                return malformed(format!("{key_name} takes one value"));
            }
            // Exactly one value, checked just above.
            list[0].to_ascii_lowercase()
        }
    };
    match text.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => malformed(format!("{key_name} must be true or false")),
    }
}

impl Condition {
    /// Whether the request has a value for the key.
    fn present(&self, r: &RequestContext<'_>) -> bool {
        match self.key {
            ConditionKey::SecureTransport => true,
            ConditionKey::SourceIp => r.source_ip.is_some(),
            _ => self.actual(r).is_some(),
        }
    }

    /// The request's value of a string-valued key, if it has one.
    fn actual<'r>(&self, r: &'r RequestContext<'_>) -> Option<&'r str> {
        match &self.key {
            ConditionKey::Prefix => r.prefix,
            ConditionKey::ExistingObjectTag(tag) => r
                .object_tags
                .and_then(|tags| tags.iter().find(|(k, _)| k == tag))
                .map(|(_, v)| v.as_str()),
            ConditionKey::ServerSideEncryption => r.encryption.server_side_encryption,
            ConditionKey::KmsKeyId => r.encryption.kms_key_id,
            ConditionKey::CustomerAlgorithm => r.encryption.customer_algorithm,
            ConditionKey::Header(name) => r
                .encryption
                .others
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v),
            ConditionKey::SecureTransport | ConditionKey::SourceIp => None,
        }
    }

    fn holds(&self, r: &RequestContext<'_>) -> bool {
        if self.if_exists && !self.present(r) {
            return true;
        }
        match (&self.values, &self.key) {
            (Values::Bool(want), _) if self.operator == Operator::Null => self.present(r) != *want,
            (Values::Bool(want), ConditionKey::SecureTransport) => r.secure == *want,
            (Values::Networks(nets), ConditionKey::SourceIp) => match r.source_ip {
                Some(ip) => nets.iter().any(|n| n.contains(&ip)) != self.operator.negated(),
                None => self.operator.negated(),
            },
            (Values::Strings(values), _) => {
                let Some(actual) = self.actual(r) else {
                    return self.operator.negated();
                };
                let any = values.iter().any(|v| match self.operator {
                    Operator::StringEquals | Operator::StringNotEquals => v == actual,
                    Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase => {
                        v.eq_ignore_ascii_case(actual)
                    }
                    _ => glob(v, actual),
                });
                any != self.operator.negated()
            }
            _ => false,
        }
    }
}

/// `*` matches any run of characters, `?` any one. Indexes stay in bounds: `ti < t.len()` is
/// the loop condition, `p[pi]` is read only after `pi < p.len()`, and `pi` never passes
/// `p.len()` (it grows from below it, or is reset to just after a `*` it saw).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The buckets' policies, parsed once and kept until changed.
#[derive(Clone, Default)]
pub struct Policies {
    cache: Arc<RwLock<HashMap<String, Option<Arc<Policy>>>>>,
}

impl Policies {
    /// The cached answer for `bucket`, if any (`Some(None)`: known to have no policy).
    pub fn cached(&self, bucket: &str) -> Option<Option<Arc<Policy>>> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(bucket)
            .cloned()
    }

    pub fn remember(&self, bucket: &str, policy: Option<Arc<Policy>>) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        // Bounded: a server with very many buckets just parses again.
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(bucket.to_owned(), policy);
    }

    /// Forgets `bucket` (its policy changed, or the bucket was created or deleted).
    pub fn forget(&self, bucket: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(key: &str) -> bool {
        matches!(key, "alice" | "bob")
    }

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, "data", &users)
    }

    fn request<'a>(
        principal: Option<&'a str>,
        action: &'a str,
        key: Option<&str>,
    ) -> RequestContext<'a> {
        RequestContext {
            principal,
            action,
            resource: resource_of("data", key),
            secure: false,
            source_ip: Some("10.1.2.3".parse().unwrap()),
            prefix: None,
            object_tags: None,
            encryption: EncryptionHeaders::default(),
        }
    }

    #[test]
    fn encryption_headers_and_null_conditions() {
        // The AWS user guide's policies: deny uploads without SSE, or with the wrong kind.
        let policy = parse(
            r#"{"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}}
        ]}"#,
        );
        let policy = policy.unwrap();
        let put = |sse: Option<&'static str>| {
            policy.evaluate(&RequestContext {
                encryption: EncryptionHeaders {
                    server_side_encryption: sse,
                    ..EncryptionHeaders::default()
                },
                ..request(None, "s3:PutObject", Some("k"))
            })
        };
        assert_eq!(put(None), Decision::Deny, "no SSE header");
        assert_eq!(put(Some("AES256")), Decision::Deny, "the wrong kind");
        assert_eq!(put(Some("aws:kms")), Decision::NoOpinion);
        let policy = parse(
            r#"{"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}}}
        ]}"#,
        )
        .unwrap();
        let put = |algorithm: Option<&'static str>| RequestContext {
            encryption: EncryptionHeaders {
                customer_algorithm: algorithm,
                ..EncryptionHeaders::default()
            },
            ..request(Some("alice"), "s3:PutObject", Some("k"))
        };
        assert_eq!(policy.evaluate(&put(None)), Decision::Deny);
        assert_eq!(policy.evaluate(&put(Some("AES128"))), Decision::Deny);
        assert_eq!(policy.evaluate(&put(Some("AES256"))), Decision::NoOpinion);
        let kms = parse(
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms",
                                            "s3:x-amz-server-side-encryption-aws-kms-key-id": "testkey-1"}}}]}"#,
        )
        .unwrap();
        let with = |sse, key| RequestContext {
            encryption: EncryptionHeaders {
                server_side_encryption: sse,
                kms_key_id: key,
                customer_algorithm: None,
                others: &[],
            },
            ..request(None, "s3:PutObject", Some("k"))
        };
        assert_eq!(
            kms.evaluate(&with(Some("aws:kms"), Some("testkey-1"))),
            Decision::Allow
        );
        assert_eq!(
            kms.evaluate(&with(Some("aws:kms"), Some("other"))),
            Decision::NoOpinion
        );
        assert_eq!(
            kms.evaluate(&with(Some("AES256"), None)),
            Decision::NoOpinion
        );
        assert!(parse(
            r#"{"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::data/*", "Condition": {"Null": {"s3:prefix": "maybe"}}}]}"#
        )
        .is_err());
    }

    #[test]
    fn glob_matches_stars_and_question_marks() {
        for (pattern, text, want) in [
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("arn:aws:s3:::data/*", "arn:aws:s3:::data/a/b", true),
            ("arn:aws:s3:::data/*", "arn:aws:s3:::data", false),
            (
                "arn:aws:s3:::data/public/*",
                "arn:aws:s3:::data/private/x",
                false,
            ),
            ("s3:get*", "s3:getobject", true),
            ("s3:get*", "s3:putobject", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.csv", "x/y.csv", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob(pattern, text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn malformed_policies_are_refused_with_a_reason() {
        for (text, reason) in [
            ("not json", "invalid Json"),
            ("[]", "JSON object"),
            (r#"{"Version":"2012-10-17"}"#, "Statement"),
            (r#"{"Statement":[]}"#, "Statement"),
            (r#"{"Version":"2020-01-01","Statement":[]}"#, "version"),
            (
                r#"{"Statement":[{"Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "effect",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "Principal",
            ),
            (
                // Valid JSON with no principal in it: refused, not a panic.
                r#"{"Statement":[{"Effect":"Allow","Principal":{},"Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "principal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["mallory"]},"Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "Invalid principal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "Invalid principal",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"ec2:RunInstances","Resource":"arn:aws:s3:::data/*"}]}"#,
                "invalid action",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObjekt","Resource":"arn:aws:s3:::data/*"}]}"#,
                "invalid action",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}"#,
                "invalid resource",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"data/*"}]}"#,
                "invalid resource",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}]}"#,
                "Resource",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}]}"#,
                "not supported",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}}]}"#,
                "Unsupported condition operator",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Condition":{"StringEquals":{"aws:UserAgent":"x"}}}]}"#,
                "Unsupported condition key",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Condition":{"Bool":{"aws:SourceIp":"true"}}}]}"#,
                "cannot be used",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}}]}"#,
                "Invalid IP",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Condition":{"Bool":{"aws:SecureTransport":"maybe"}}}]}"#,
                "true or false",
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*","Extra":1}]}"#,
                "Unknown field",
            ),
        ] {
            let err = parse(text).expect_err(text).0;
            assert!(
                err.to_lowercase().contains(&reason.to_lowercase()),
                "{text}: {err}"
            );
        }
        assert!(parse(&format!(
            "{{\"Statement\":[], \"Id\":\"{}\"}}",
            "x".repeat(MAX_SIZE)
        ))
        .is_err());
    }

    const PUBLIC_PREFIX: &str = r#"{
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": "arn:aws:s3:::data/public/*"
        }]
    }"#;

    const DENY_DELETE: &str = r#"{
        "Statement": [{
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "Resource": "arn:aws:s3:::data/*"
        }, {
            "Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::123456789012:user/alice", "bob"]},
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"]
        }]
    }"#;

    #[test]
    fn decisions_follow_deny_then_allow_then_no_opinion() {
        let public = parse(PUBLIC_PREFIX).unwrap();
        let guarded = parse(DENY_DELETE).unwrap();
        for (policy, principal, action, key, want) in [
            (
                &public,
                None,
                "s3:GetObject",
                Some("public/a.csv"),
                Decision::Allow,
            ),
            (
                &public,
                Some("alice"),
                "s3:GetObject",
                Some("public/a.csv"),
                Decision::Allow,
            ),
            (
                &public,
                None,
                "s3:GetObject",
                Some("private/a.csv"),
                Decision::NoOpinion,
            ),
            (
                &public,
                None,
                "s3:PutObject",
                Some("public/a.csv"),
                Decision::NoOpinion,
            ),
            (&public, None, "s3:ListBucket", None, Decision::NoOpinion),
            (
                &guarded,
                Some("alice"),
                "s3:DeleteObject",
                Some("x"),
                Decision::Deny,
            ),
            (&guarded, None, "s3:DeleteObject", Some("x"), Decision::Deny),
            (
                &guarded,
                Some("alice"),
                "s3:PutObject",
                Some("x"),
                Decision::Allow,
            ),
            (
                &guarded,
                Some("bob"),
                "s3:ListBucket",
                None,
                Decision::Allow,
            ),
            (
                &guarded,
                Some("bob"),
                "s3:GetObjectVersion",
                Some("x"),
                Decision::Allow,
            ),
            (
                &guarded,
                Some("carol"),
                "s3:GetObject",
                Some("x"),
                Decision::NoOpinion,
            ),
            (
                &guarded,
                None,
                "s3:GetObject",
                Some("x"),
                Decision::NoOpinion,
            ),
        ] {
            let r = request(principal, action, key);
            assert_eq!(policy.evaluate(&r), want, "{principal:?} {action} {key:?}");
        }
        assert!(public.is_public());
        assert!(!guarded.is_public());
    }

    #[test]
    fn restricting_a_public_policy_shuts_out_anonymous_requests_only() {
        let mut policy = parse(r#"{"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"},
            {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3:::data/*"}
        ]}"#).unwrap();
        let get = |p| request(p, "s3:GetObject", Some("k"));
        assert_eq!(policy.evaluate(&get(None)), Decision::Allow);
        policy.restrict_public();
        assert_eq!(policy.evaluate(&get(None)), Decision::NoOpinion);
        assert_eq!(policy.evaluate(&get(Some("alice"))), Decision::Allow);
        let put = request(Some("bob"), "s3:PutObject", Some("k"));
        assert_eq!(policy.evaluate(&put), Decision::Allow);
    }

    #[test]
    fn conditions_on_transport_address_prefix_and_tags() {
        let policy = parse(r#"{"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::data",
             "Condition": {"StringLike": {"s3:prefix": ["public/*", ""]}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringEquals": {"s3:ExistingObjectTag/classification": "public"}}}
        ]}"#).unwrap();
        assert!(policy.needs_object_tags());
        // The tag-conditioned Allow is open to anyone from anywhere.
        assert!(policy.is_public());

        let public_tags = [("classification".to_owned(), "public".to_owned())];
        let secret_tags = [("classification".to_owned(), "secret".to_owned())];
        let base = |secure: bool| RequestContext {
            secure,
            ..request(None, "s3:ListBucket", None)
        };
        // Plain HTTP: denied whatever else.
        assert_eq!(
            policy.evaluate(&RequestContext {
                prefix: Some("public/x"),
                ..base(false)
            }),
            Decision::Deny
        );
        // Over TLS, listing a public prefix from 10/8.
        assert_eq!(
            policy.evaluate(&RequestContext {
                prefix: Some("public/x"),
                ..base(true)
            }),
            Decision::Allow
        );
        assert_eq!(
            policy.evaluate(&RequestContext {
                prefix: Some("private/"),
                ..base(true)
            }),
            Decision::NoOpinion
        );
        assert_eq!(
            policy.evaluate(&base(true)),
            Decision::NoOpinion,
            "no prefix: StringLike fails"
        );
        let elsewhere = RequestContext {
            prefix: Some("public/"),
            source_ip: Some("192.0.2.1".parse().unwrap()),
            ..base(true)
        };
        assert_eq!(policy.evaluate(&elsewhere), Decision::NoOpinion);
        // Tags.
        let get = |tags: Option<&'static [(String, String)]>| RequestContext {
            secure: true,
            object_tags: tags,
            ..request(None, "s3:GetObject", Some("doc"))
        };
        let leak = |t: &[(String, String)]| -> &'static [(String, String)] {
            Box::leak(t.to_vec().into_boxed_slice())
        };
        assert_eq!(
            policy.evaluate(&get(Some(leak(&public_tags)))),
            Decision::Allow
        );
        assert_eq!(
            policy.evaluate(&get(Some(leak(&secret_tags)))),
            Decision::NoOpinion
        );
        assert_eq!(policy.evaluate(&get(None)), Decision::NoOpinion);
    }

    #[test]
    fn negated_operators_hold_when_the_key_is_absent() {
        let policy = parse(r#"{"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::data",
             "Condition": {"StringNotLike": {"s3:prefix": "home/alice/*"}}}
        ]}"#).unwrap();
        let mut r = request(Some("alice"), "s3:ListBucket", None);
        assert_eq!(policy.evaluate(&r), Decision::Deny, "no prefix given");
        r.prefix = Some("home/alice/x");
        assert_eq!(policy.evaluate(&r), Decision::NoOpinion);
        r.prefix = Some("home/bob/");
        assert_eq!(policy.evaluate(&r), Decision::Deny);
    }

    #[test]
    fn every_operation_maps_to_a_listed_action() {
        for op in [
            "GetObject",
            "HeadObject",
            "PutObject",
            "CopyObject",
            "DeleteObject",
            "DeleteObjects",
            "ListObjects",
            "ListObjectsV2",
            "ListObjectVersions",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "AbortMultipartUpload",
            "ListParts",
            "GetObjectTagging",
            "PutBucketPolicy",
            "GetBucketPolicyStatus",
            "GetBucketReplication",
            "PutObjectRetention",
            "GetObjectLegalHold",
            "PutObjectLockConfiguration",
        ] {
            for versioned in [false, true] {
                let action = action_of(op, versioned).unwrap();
                assert!(ACTIONS.contains(&action), "{op}: {action}");
            }
        }
        assert_eq!(action_of("ListBuckets", false), None);
        assert_eq!(action_of("GetObject", true), Some("s3:GetObjectVersion"));
    }

    #[test]
    fn request_headers_are_condition_keys() {
        let policy = parse(
            r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringLike": {"s3:x-amz-copy-source": "src/public/*"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringEquals": {"s3:x-amz-acl": "public-read",
                                            "S3:X-Amz-Metadata-Directive": "REPLACE"}}}]}"#,
        )
        .unwrap();
        let put = |others: &[(&str, &str)]| {
            policy.evaluate(&RequestContext {
                principal: None,
                action: "s3:PutObject",
                resource: resource_of("data", Some("k")),
                secure: false,
                source_ip: None,
                prefix: None,
                object_tags: None,
                encryption: EncryptionHeaders {
                    others,
                    ..EncryptionHeaders::default()
                },
            })
        };
        assert_eq!(
            put(&[("x-amz-copy-source", "src/public/a")]),
            Decision::Allow
        );
        assert_eq!(
            put(&[("x-amz-copy-source", "src/private/a")]),
            Decision::NoOpinion
        );
        assert_eq!(put(&[]), Decision::NoOpinion);
        assert_eq!(
            put(&[
                ("x-amz-copy-source", "src/public/a"),
                ("x-amz-acl", "public-read"),
                ("x-amz-metadata-directive", "REPLACE")
            ]),
            Decision::Deny
        );
        assert!(Policy::parse(
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringEquals": {"s3:x-amz-grant-anything": "x"}}}]}"#,
            "data",
            &|_| true
        )
        .is_err());
    }

    #[test]
    fn if_exists_operators_hold_without_the_key_and_referer_is_a_key() {
        let policy = parse(
            r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"Null": {"s3:if-match": "true"}}}]}"#,
        )
        .unwrap();
        let ask = |action: &'static str, others: &[(&str, &str)]| {
            policy.evaluate(&RequestContext {
                encryption: EncryptionHeaders {
                    others,
                    ..EncryptionHeaders::default()
                },
                ..request(None, action, Some("k"))
            })
        };
        let get = |others: &[(&str, &str)]| ask("s3:GetObject", others);
        assert_eq!(
            get(&[("referer", "http://www.example.com/a")]),
            Decision::Allow
        );
        assert_eq!(
            get(&[("referer", "http://elsewhere/")]),
            Decision::NoOpinion
        );
        assert_eq!(
            get(&[]),
            Decision::Allow,
            "IfExists: no Referer, the condition holds"
        );
        // A policy can require conditional deletes (as AWS documents with s3:if-match).
        assert_eq!(ask("s3:DeleteObject", &[]), Decision::Deny);
        assert_eq!(
            ask("s3:DeleteObject", &[("if-match", "\"abc\"")]),
            Decision::NoOpinion
        );
        // NullIfExists is not an operator.
        assert!(Policy::parse(
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::data/*",
             "Condition": {"NullIfExists": {"aws:Referer": "true"}}}]}"#,
            "data",
            &|_| true
        )
        .is_err());
    }
}
