//! The admin API: apps and their API keys. Every route needs the admin
//! token (`authorization: Bearer <auth.admin_token>`); an app's key gets
//! 403, a request without a key 401.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/apps` `{"name": "…"}` | creates an app and its first key → 201 [`CreatedApp`] |
//! | `GET /api/v1/apps` | every app with its keys → [`AppList`] |
//! | `POST /api/v1/apps/{id}/keys` | a new key for the app → 201 [`NewKey`] |
//! | `DELETE /api/v1/keys/{id}` | revokes a key → [`RevokedKey`] |
//!
//! A key is shown in clear exactly once, in the answer that creates it;
//! lists show its id and a short prefix, never the key or its hash. A
//! revoked key stops working at once on the process that revoked it and
//! within `auth.cache_ttl_ms` on every other replica.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use xray_auth::{AppWithKeys, ManageError};
use xray_model::{ApiKey, App};

use crate::AppState;
use crate::auth::{Caller, require_admin};
use crate::error::{ApiError, ErrorBody};
use crate::handlers::NoParams;
use crate::query::{ApiQuery, format_time};

/// An API key as listed: never the key itself, never its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Key id: pass it to `DELETE /api/v1/keys/{id}` to revoke the key.
    pub id: String,
    /// The app the key belongs to.
    pub app_id: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    /// What the key may do (`ingest`, `read`).
    pub scopes: Vec<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Revocation time, RFC 3339; null while the key works.
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        KeyView {
            id: k.id.clone(),
            app_id: k.app_id.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            created_at: format_time(k.created_at_ns),
            revoked_at: k.revoked_at_ns.map(format_time),
        }
    }
}

/// An app with its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// App id: what data and keys belong to.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Its keys, revoked ones included, oldest first.
    pub keys: Vec<KeyView>,
}

impl From<&AppWithKeys> for AppView {
    fn from(a: &AppWithKeys) -> Self {
        AppView {
            id: a.app.id.clone(),
            name: a.app.name.clone(),
            created_at: format_time(a.app.created_at_ns),
            keys: a.keys.iter().map(KeyView::from).collect(),
        }
    }
}

/// `GET /api/v1/apps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    /// Every app, oldest first.
    pub apps: Vec<AppView>,
}

/// A key just created: the only answer that holds the key in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewKey {
    /// Key id (to revoke it).
    pub id: String,
    /// The app the key belongs to.
    pub app_id: String,
    /// The key: send it as `x-api-key` or `authorization: Bearer`. Shown
    /// once; X-Ray keeps only its hash.
    pub key: String,
    /// The first characters of the key, as lists show it.
    pub prefix: String,
    /// What the key may do.
    pub scopes: Vec<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

impl NewKey {
    /// The answer for `record`, created with the clear `key`.
    pub fn new(record: &ApiKey, key: String) -> Self {
        NewKey {
            id: record.id.clone(),
            app_id: record.app_id.clone(),
            key,
            prefix: record.prefix.clone(),
            scopes: record.scopes.clone(),
            created_at: format_time(record.created_at_ns),
        }
    }
}

/// `POST /api/v1/apps`: the new app and its first key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedApp {
    /// App id, derived from the name (`Checkout Ranking` →
    /// `checkout-ranking`, with a random suffix when taken).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// The app's first key, in clear, shown once.
    pub key: NewKey,
}

impl CreatedApp {
    /// The answer for `app` and its first key `record` (clear text `key`).
    pub fn new(app: &App, record: &ApiKey, key: String) -> Self {
        CreatedApp {
            id: app.id.clone(),
            name: app.name.clone(),
            created_at: format_time(app.created_at_ns),
            key: NewKey::new(record, key),
        }
    }
}

/// `DELETE /api/v1/keys/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RevokedKey {
    /// The key id.
    pub id: String,
    /// Always true: the key is revoked (revoking twice keeps the first time).
    pub revoked: bool,
}

/// Body of `POST /api/v1/apps`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppRequest {
    /// Display name, 1 to 200 characters, no control characters.
    pub name: String,
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::InvalidName(reason) => ApiError::param("name", reason),
            ManageError::AppNotFound(id) => ApiError::NotFound(format!("no app with id \"{id}\"")),
            ManageError::Store(e) => ApiError::from(e),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Parses a JSON request body, saying what is wrong in a way the caller can
/// act on.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("invalid request body: {e}; expected {expected}"))
    })
}

/// Creates an app and its first API key (admin token only).
#[utoipa::path(
    post,
    path = "/api/v1/apps",
    tag = "admin",
    request_body(content = CreateAppRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The app and its first key, shown once", body = CreatedApp),
        (status = 400, description = "The body is not {\"name\": \"…\"} or the name is invalid", body = ErrorBody),
    )
)]
pub async fn create_app(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(_): ApiQuery<NoParams>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedApp>), ApiError> {
    require_admin(&caller, &state.auth)?;
    let req: CreateAppRequest = json_body(&body, r#"{"name": "<app name>"}"#)?;
    let (app, record, key) =
        xray_auth::create_app_with_key(state.auth.store().as_ref(), &req.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApp::new(&app, &record, key)),
    ))
}

/// Every app with its keys (admin token only). Keys show an id and a
/// prefix, never the key.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    tag = "admin",
    responses(
        (status = 200, description = "Every app, oldest first", body = AppList),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
    )
)]
pub async fn list_apps(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<AppList>, ApiError> {
    require_admin(&caller, &state.auth)?;
    let apps = xray_auth::list_apps(state.auth.store().as_ref()).await?;
    Ok(Json(AppList {
        apps: apps.iter().map(AppView::from).collect(),
    }))
}

/// Creates a new API key for an app (admin token only).
#[utoipa::path(
    post,
    path = "/api/v1/apps/{id}/keys",
    tag = "admin",
    params(("id" = String, Path, description = "App id")),
    responses(
        (status = 201, description = "The new key, shown once", body = NewKey),
        (status = 404, description = "No app has this id", body = ErrorBody),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<(StatusCode, Json<NewKey>), ApiError> {
    require_admin(&caller, &state.auth)?;
    let (record, key) = xray_auth::create_key(state.auth.store().as_ref(), &id).await?;
    Ok((StatusCode::CREATED, Json(NewKey::new(&record, key))))
}

/// Revokes an API key (admin token only). This process refuses it at once,
/// other replicas within `auth.cache_ttl_ms`.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Key id, as `GET /api/v1/apps` lists it")),
    responses(
        (status = 200, description = "The key is revoked (also when it already was)", body = RevokedKey),
        (status = 404, description = "No key has this id", body = ErrorBody),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiQuery(_): ApiQuery<NoParams>,
) -> Result<Json<RevokedKey>, ApiError> {
    require_admin(&caller, &state.auth)?;
    if state.auth.revoke_key(&id).await? {
        Ok(Json(RevokedKey { id, revoked: true }))
    } else {
        Err(ApiError::NotFound(format!("no API key with id \"{id}\"")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_never_hold_the_hash() {
        let k = ApiKey {
            id: "key_1".into(),
            app_id: "shop".into(),
            prefix: "xr_AbCdEf".into(),
            hash: "ab".repeat(32),
            scopes: vec!["ingest".into(), "read".into()],
            created_at_ns: 1_700_000_000_000_000_000,
            revoked_at_ns: Some(1_700_000_001_000_000_000),
        };
        let v = serde_json::to_value(KeyView::from(&k)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "key_1",
                "app_id": "shop",
                "prefix": "xr_AbCdEf",
                "scopes": ["ingest", "read"],
                "created_at": "2023-11-14T22:13:20.000000000Z",
                "revoked_at": "2023-11-14T22:13:21.000000000Z",
            })
        );
        assert!(!v.to_string().contains(&k.hash));
    }

    #[test]
    fn bodies_are_checked() {
        let ok: CreateAppRequest = json_body(br#"{"name":"Shop"}"#, "x").unwrap();
        assert_eq!(ok.name, "Shop");
        for bad in [&b"{}"[..], b"not json", br#"{"name":"a","extra":1}"#] {
            let e = json_body::<CreateAppRequest>(bad, "{\"name\": …}").unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.to_string().starts_with("invalid request body: "), "{e}");
        }
        let e = ApiError::from(ManageError::InvalidName(
            "the name must not be empty".into(),
        ));
        assert_eq!(e.to_string(), "name: the name must not be empty");
        let e = ApiError::from(ManageError::AppNotFound("nope".into()));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
    }
}
