//! Authentication in the OpenAPI document: the security schemes, and on
//! every `/api/v1` operation which of them it takes and the error answers
//! authentication adds (401, 403 for the admin routes, 429, 503).
//!
//! Done on the generated document rather than per handler, so a route
//! added under `/api/v1` is documented as authenticated without anyone
//! having to remember it.

use utoipa::Modify;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Scheme name: an app's API key as a bearer token.
pub(crate) const BEARER: &str = "bearer";
/// Scheme name: an app's API key in the `x-api-key` header.
pub(crate) const API_KEY: &str = "api_key";
/// Scheme name: the admin token as a bearer token.
pub(crate) const ADMIN: &str = "admin_token";

/// Adds the security schemes to the document's components.
pub(crate) struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("xr_ followed by 32 base62 characters")
                    .description(Some(
                        "An app's API key: `authorization: Bearer xr_…`. Reads see that app only.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An app's API key in the x-api-key header (same as the bearer form).",
            ))),
        );
        components.add_security_scheme(
            ADMIN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`auth.admin_token`): `authorization: Bearer …`. \
                         Reads every app; the only credential the admin routes accept.",
                    ))
                    .build(),
            ),
        );
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Marks every `/api/v1` operation as authenticated: its security
/// requirements (the admin routes, tagged `admin`, take only the admin
/// token; reads take an app key or the admin token, or nothing when
/// `auth.required = false`) and the answers authentication may give.
pub(crate) fn document_auth(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            let admin = op
                .tags
                .as_ref()
                .is_some_and(|t| t.iter().any(|t| t == "admin"));
            let r = &mut op.responses.responses;
            if admin {
                op.security = Some(vec![SecurityRequirement::new(ADMIN, Vec::<String>::new())]);
                r.entry("401".into()).or_insert_with(|| {
                    error_response("No key, or a key that is not valid: send the admin token")
                });
                r.entry("403".into()).or_insert_with(|| {
                    error_response("An app's API key: only the admin token manages apps and keys")
                });
            } else {
                op.security = Some(vec![
                    SecurityRequirement::new(BEARER, Vec::<String>::new()),
                    SecurityRequirement::new(API_KEY, Vec::<String>::new()),
                    SecurityRequirement::new(ADMIN, Vec::<String>::new()),
                    // keys are optional while auth.required = false
                    SecurityRequirement::default(),
                ]);
                r.entry("401".into()).or_insert_with(|| {
                    error_response(
                        "The key is missing (auth.required = true), unknown, revoked or malformed",
                    )
                });
            }
            r.entry("429".into()).or_insert_with(|| {
                error_response(
                    "The key sent more requests than auth.rate_limit allows; see Retry-After",
                )
            });
            r.entry("503".into()).or_insert_with(|| {
                error_response("The store (or the key lookup in it) is unavailable")
            });
        }
    }
}
