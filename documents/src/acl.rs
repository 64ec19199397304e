//! Access control lists, for buckets whose Object Ownership enables them (`ObjectWriter`,
//! `BucketOwnerPreferred`): the grants of a bucket or an object version, made from a canned
//! ACL, from `x-amz-grant-*` headers or from an `AccessControlPolicy` document, and what they
//! allow a caller. Stored as JSON.

use serde::{Deserialize, Serialize};

use crate::{error, DocumentError};

pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// What a grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    FullControl,
    Read,
    Write,
    ReadAcp,
    WriteAcp,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::FullControl => "FULL_CONTROL",
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "FULL_CONTROL" => Permission::FullControl,
            "READ" => Permission::Read,
            "WRITE" => Permission::Write,
            "READ_ACP" => Permission::ReadAcp,
            "WRITE_ACP" => Permission::WriteAcp,
            _ => return None,
        })
    }
}

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A canonical user: an access key here.
    User(String),
    AllUsers,
    AuthenticatedUsers,
    LogDelivery,
}

impl Grantee {
    /// A group by its URI.
    pub fn group(uri: &str) -> Option<Grantee> {
        Some(match uri {
            ALL_USERS => Grantee::AllUsers,
            AUTHENTICATED_USERS => Grantee::AuthenticatedUsers,
            LOG_DELIVERY => Grantee::LogDelivery,
            _ => return None,
        })
    }

    /// The URI of a group (`None` for a user).
    pub fn uri(&self) -> Option<&'static str> {
        match self {
            Grantee::User(_) => None,
            Grantee::AllUsers => Some(ALL_USERS),
            Grantee::AuthenticatedUsers => Some(AUTHENTICATED_USERS),
            Grantee::LogDelivery => Some(LOG_DELIVERY),
        }
    }

    fn is_public(&self) -> bool {
        matches!(self, Grantee::AllUsers | Grantee::AuthenticatedUsers)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: Permission,
}

/// The owner of a bucket or object version and its grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub owner: String,
    pub grants: Vec<Grant>,
}

/// Who asks: nobody (an unsigned request) or an access key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller<'a> {
    Anonymous,
    Signed(&'a str),
}

impl Acl {
    /// The owner with FULL_CONTROL, nobody else.
    pub fn private(owner: &str) -> Acl {
        Acl {
            owner: owner.to_owned(),
            grants: vec![Grant {
                grantee: Grantee::User(owner.to_owned()),
                permission: Permission::FullControl,
            }],
        }
    }

    /// A canned ACL (`x-amz-acl`) for a resource `owner` owns in a bucket `bucket_owner` owns.
    pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> Result<Acl, DocumentError> {
        let mut acl = Acl::private(owner);
        let mut add = |grantee: Grantee, permission: Permission| {
            acl.grants.push(Grant {
                grantee,
                permission,
            })
        };
        match name {
            "private" | "aws-exec-read" => {}
            "public-read" => add(Grantee::AllUsers, Permission::Read),
            "public-read-write" => {
                add(Grantee::AllUsers, Permission::Read);
                add(Grantee::AllUsers, Permission::Write);
            }
            "authenticated-read" => add(Grantee::AuthenticatedUsers, Permission::Read),
            "bucket-owner-read" if bucket_owner != owner => {
                add(Grantee::User(bucket_owner.to_owned()), Permission::Read)
            }
            "bucket-owner-full-control" if bucket_owner != owner => add(
                Grantee::User(bucket_owner.to_owned()),
                Permission::FullControl,
            ),
            "bucket-owner-read" | "bucket-owner-full-control" => {}
            "log-delivery-write" => {
                add(Grantee::LogDelivery, Permission::Write);
                add(Grantee::LogDelivery, Permission::ReadAcp);
            }
            _ => {
                return Err(error(
                    "InvalidArgument",
                    format!("Invalid canned ACL {name:?}"),
                ))
            }
        }
        // The grants to others first, the owner's last (the order RGW answers in).
        acl.grants.rotate_left(1);
        Ok(acl)
    }

    /// The grants of `x-amz-grant-*` headers (permission, header value): each value a comma-
    /// separated list of `id="..."`, `uri="..."` or `emailAddress="..."`. The ACL holds
    /// exactly these grants (the owner keeps its implicit rights).
    pub fn from_grant_headers(
        owner: &str,
        headers: &[(Permission, &str)],
        users: &dyn Users,
    ) -> Result<Acl, DocumentError> {
        let mut grants = Vec::new();
        for (permission, value) in headers {
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (kind, quoted) = item.split_once('=').ok_or_else(|| bad_grant(item))?;
                let v = quoted.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => user(v, users)?,
                    "uri" => Grantee::group(v).ok_or_else(|| {
                        error("InvalidArgument", format!("Invalid group uri {v:?}"))
                    })?,
                    "emailaddress" => {
                        Grantee::User(users.by_email(v).ok_or_else(unresolvable_email)?)
                    }
                    _ => return Err(bad_grant(item)),
                };
                grants.push(Grant {
                    grantee,
                    permission: *permission,
                });
            }
        }
        Ok(Acl {
            owner: owner.to_owned(),
            grants,
        })
    }

    /// Whether the ACL lets `caller` do what `permission` allows. The owner may do
    /// everything; `ignore_public` (the Public Access Block's IgnorePublicAcls) disregards
    /// grants to AllUsers and AuthenticatedUsers.
    pub fn allows(&self, caller: Caller<'_>, permission: Permission, ignore_public: bool) -> bool {
        if caller == Caller::Signed(&self.owner) {
            return true;
        }
        self.grants.iter().any(|g| {
            let covers = g.permission == permission || g.permission == Permission::FullControl;
            let matches = match (&g.grantee, caller) {
                (Grantee::AllUsers, _) => !ignore_public,
                (Grantee::AuthenticatedUsers, Caller::Signed(_)) => !ignore_public,
                (Grantee::User(id), Caller::Signed(key)) => id == key,
                _ => false,
            };
            covers && matches
        })
    }

    /// Whether it grants anything to AllUsers or AuthenticatedUsers.
    pub fn is_public(&self) -> bool {
        self.grants.iter().any(|g| g.grantee.is_public())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an ACL serializes")
    }

    pub fn from_json(doc: &[u8]) -> Result<Acl, serde_json::Error> {
        serde_json::from_slice(doc)
    }
}

/// Who the users are: grants name them by canonical id or e-mail address; an ACL keeps
/// their access keys.
pub trait Users {
    /// The access key of the user whose canonical id (or access key) is `id`.
    fn by_id(&self, id: &str) -> Option<String>;
    /// The access key of the user with this e-mail address.
    fn by_email(&self, email: &str) -> Option<String>;
}

/// A grantee named by id must be a known user (S3: `InvalidArgument`, "Invalid id").
pub fn user(id: &str, users: &dyn Users) -> Result<Grantee, DocumentError> {
    users
        .by_id(id)
        .map(Grantee::User)
        .ok_or_else(|| error("InvalidArgument", "Invalid id"))
}

pub fn unresolvable_email() -> DocumentError {
    error(
        "UnresolvableGrantByEmailAddress",
        "The e-mail address you provided does not match any account on record.",
    )
}

fn bad_grant(item: &str) -> DocumentError {
    error(
        "InvalidArgument",
        format!("Invalid grant {item:?}: use id=\"...\", uri=\"...\" or emailAddress=\"...\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_acls_grant_what_s3_says() {
        let read = Acl::canned("public-read", "alice", "alice").unwrap();
        assert!(read.allows(Caller::Anonymous, Permission::Read, false));
        assert!(!read.allows(Caller::Anonymous, Permission::Write, false));
        assert!(
            !read.allows(Caller::Anonymous, Permission::Read, true),
            "IgnorePublicAcls"
        );
        assert!(read.is_public());
        let auth = Acl::canned("authenticated-read", "alice", "alice").unwrap();
        assert!(!auth.allows(Caller::Anonymous, Permission::Read, false));
        assert!(auth.allows(Caller::Signed("bob"), Permission::Read, false));
        let rw = Acl::canned("public-read-write", "alice", "alice").unwrap();
        assert!(rw.allows(Caller::Anonymous, Permission::Write, false));
        let bofc = Acl::canned("bucket-owner-full-control", "writer", "owner").unwrap();
        assert!(bofc.allows(Caller::Signed("owner"), Permission::WriteAcp, false));
        assert!(!bofc.is_public());
        let private = Acl::canned("private", "alice", "bob").unwrap();
        assert!(private.allows(Caller::Signed("alice"), Permission::WriteAcp, false));
        assert!(!private.allows(Caller::Signed("bob"), Permission::Read, false));
        assert_eq!(
            Acl::canned("nope", "a", "a").unwrap_err().code,
            "InvalidArgument"
        );
    }

    struct Known;
    impl Users for Known {
        fn by_id(&self, id: &str) -> Option<String> {
            (id == "bob" || id == "bob-id").then(|| "bob".to_owned())
        }
        fn by_email(&self, email: &str) -> Option<String> {
            (email == "bob@example.com").then(|| "bob".to_owned())
        }
    }

    #[test]
    fn grant_headers_name_users_and_groups() {
        let known = Known;
        let acl = Acl::from_grant_headers(
            "alice",
            &[
                (
                    Permission::Read,
                    r#"id="bob", uri="http://acs.amazonaws.com/groups/global/AllUsers""#,
                ),
                (Permission::WriteAcp, "id=bob"),
            ],
            &known,
        )
        .unwrap();
        assert!(acl.allows(Caller::Signed("bob"), Permission::WriteAcp, false));
        assert!(acl.allows(Caller::Anonymous, Permission::Read, false));
        assert!(!acl.allows(Caller::Anonymous, Permission::ReadAcp, false));
        assert!(
            acl.allows(Caller::Signed("alice"), Permission::WriteAcp, false),
            "the owner"
        );
        let unknown = Acl::from_grant_headers("alice", &[(Permission::Read, "id=carol")], &known);
        assert_eq!(unknown.unwrap_err().code, "InvalidArgument");
        let email =
            Acl::from_grant_headers("alice", &[(Permission::Read, "emailAddress=a@b.c")], &known);
        assert_eq!(email.unwrap_err().code, "UnresolvableGrantByEmailAddress");
        let by = Acl::from_grant_headers(
            "alice",
            &[(Permission::Read, "emailAddress=bob@example.com, id=bob-id")],
            &known,
        )
        .unwrap();
        assert!(by
            .grants
            .iter()
            .all(|g| g.grantee == Grantee::User("bob".into())));
        assert_eq!(Acl::from_json(&acl.to_json()).unwrap(), acl);
    }
}
