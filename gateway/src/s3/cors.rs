//! Put/Get/DeleteBucketCors: the bucket's CORS rules, stored as the `cors` document (JSON of
//! `meridian_documents::cors::CorsConfig`). Browsers meet them in `crate::cors`: preflight
//! `OPTIONS` answers and the `Access-Control-*` headers of every answer.

use meridian_documents::cors::{CorsConfig, CorsRule};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::errors::{custom_error, document_error};
use super::MeridianS3;

/// The bucket configuration document holding the CORS rules.
pub const DOCUMENT: &str = "cors";

fn rule_of(r: CORSRule) -> CorsRule {
    CorsRule {
        id: r.id,
        allowed_origins: r.allowed_origins,
        allowed_methods: r.allowed_methods,
        allowed_headers: r.allowed_headers.unwrap_or_default(),
        expose_headers: r.expose_headers.unwrap_or_default(),
        max_age_seconds: r.max_age_seconds,
    }
}

fn dto_of(r: &CorsRule) -> CORSRule {
    let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    CORSRule {
        id: r.id.clone(),
        allowed_origins: r.allowed_origins.clone(),
        allowed_methods: r.allowed_methods.clone(),
        allowed_headers: some(&r.allowed_headers),
        expose_headers: some(&r.expose_headers),
        max_age_seconds: r.max_age_seconds,
    }
}

impl MeridianS3 {
    pub(super) async fn put_bucket_cors_impl(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = req.input;
        self.bucket(&input.bucket).await?;
        let config = CorsConfig {
            rules: input
                .cors_configuration
                .cors_rules
                .into_iter()
                .map(rule_of)
                .collect(),
        };
        config.validate().map_err(document_error)?;
        self.put_document(&input.bucket, DOCUMENT, config.to_json())
            .await?;
        self.cors.invalidate(&input.bucket);
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    pub(super) async fn get_bucket_cors_impl(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        let missing = custom_error(
            "NoSuchCORSConfiguration",
            http::StatusCode::NOT_FOUND,
            "The CORS configuration does not exist",
        );
        let config = self
            .stored_document(bucket, DOCUMENT, missing, CorsConfig::from_json)
            .await?;
        Ok(S3Response::new(GetBucketCorsOutput {
            cors_rules: Some(config.rules.iter().map(dto_of).collect()),
        }))
    }

    pub(super) async fn delete_bucket_cors_impl(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let bucket = &req.input.bucket;
        self.bucket(bucket).await?;
        self.delete_document(bucket, DOCUMENT).await?;
        self.cors.invalidate(bucket);
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}
