//! Bucket policies: Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus. A policy is parsed
//! and checked before it is stored (`MalformedPolicy` otherwise, nothing stored), kept as
//! the document the client sent, and evaluated by the access hook (`crate::bucket_policy`).

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::MeridianS3;
use crate::bucket_policy::{Policy, DOCUMENT};
use crate::s3::errors::IntoS3;

impl MeridianS3 {
    pub(super) async fn put_bucket_policy_impl(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let users = self.users.clone();
        let policy = Policy::parse(&input.policy, &input.bucket, &|key| {
            users.principal(key).is_some()
        })
        .map_err(|e| s3s::S3Error::with_message(s3s::S3ErrorCode::MalformedPolicy, e.0))?;
        if policy.is_public()
            && self
                .public_access_block(&input.bucket)
                .await?
                .block_public_policy
        {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block forbids public policies"
            ));
        }
        self.put_document(&input.bucket, DOCUMENT, input.policy.into_bytes())
            .await?;
        self.policies.forget(&input.bucket);
        Ok(S3Response::new(PutBucketPolicyOutput {}))
    }

    pub(super) async fn get_bucket_policy_impl(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let name = req.input.bucket;
        let doc = self
            .store
            .meta(move |m| m.get_bucket_config(&name, DOCUMENT))
            .await
            .s3()?
            .ok_or_else(|| s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist"))?;
        Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(String::from_utf8_lossy(&doc).into_owned()),
        }))
    }

    pub(super) async fn delete_bucket_policy_impl(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        let name = req.input.bucket;
        self.delete_document(&name, DOCUMENT).await?;
        self.policies.forget(&name);
        // s3s answers 204 No Content, as S3 does.
        Ok(S3Response::new(DeleteBucketPolicyOutput {}))
    }

    pub(super) async fn get_bucket_policy_status_impl(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        let name = req.input.bucket.clone();
        self.bucket(&name).await?;
        let doc = self
            .store
            .meta(move |m| m.get_bucket_config(&name, DOCUMENT))
            .await
            .s3()?;
        // A bucket ACL granting AllUsers or AuthenticatedUsers makes it public too (where
        // ACLs are enabled and the public access block does not ignore them).
        let acl_public = if self.acls_of(&req.input.bucket).await == super::acl::Ownership::Enforced
        {
            false
        } else {
            let cache = self.acls.clone();
            let b = req.input.bucket.clone();
            let public = tokio::task::spawn_blocking(move || {
                cache.bucket_acl(&b).is_some_and(|a| a.is_public())
            })
            .await
            .unwrap_or(false);
            public
                && !self
                    .public_access_block(&req.input.bucket)
                    .await?
                    .ignore_public_acls
        };
        let Some(doc) = doc else {
            return Ok(S3Response::new(GetBucketPolicyStatusOutput {
                policy_status: Some(PolicyStatus {
                    is_public: Some(acl_public),
                }),
            }));
        };
        let text = String::from_utf8_lossy(&doc);
        // Stored policies were checked when stored; principals since removed from the
        // config simply match nobody.
        let policy = Policy::parse(&text, &req.input.bucket, &|_| true)
            .map_err(|e| s3_error!(InternalError, "stored bucket policy unreadable: {}", e.0))?;
        Ok(S3Response::new(GetBucketPolicyStatusOutput {
            policy_status: Some(PolicyStatus {
                is_public: Some(policy.is_public() || acl_public),
            }),
        }))
    }
}
