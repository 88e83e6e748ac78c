//! Managing apps and keys on a store: what `xray apps` and the admin API
//! run.

use xray_model::{ApiKey, App, DEFAULT_APP};
use xray_store::{Store, StoreError};

use crate::key::{RandomError, display_prefix, generate_key, hash_key, random_base62};

/// Longest app name accepted, in characters.
pub const MAX_APP_NAME_CHARS: usize = 200;

/// Longest app id derived from a name, in characters (before a suffix).
const MAX_SLUG_CHARS: usize = 40;

/// Scopes every new key gets: it may send data and read its app's data.
const KEY_SCOPES: [&str; 2] = ["ingest", "read"];

/// Why managing apps or keys failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The app name is empty, too long or holds control characters.
    #[error("invalid app name: {0}")]
    InvalidName(String),
    /// No app has this id.
    #[error("no app with id \"{0}\"")]
    AppNotFound(String),
    /// Could not find a free id after several attempts.
    #[error("could not find a free id for {0}; try again")]
    NoFreeId(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// An app with its keys (revoked ones included), as listed by [`list_apps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppWithKeys {
    /// The app.
    pub app: App,
    /// Its keys by creation time. They carry hashes, never the keys.
    pub keys: Vec<ApiKey>,
}

/// Creates an app named `name` and its first key; returns the app and the
/// key in clear text, which is shown once and never stored.
///
/// The app id is derived from the name (lowercase letters, digits and `-`,
/// e.g. `Checkout Ranking` → `checkout-ranking`); when that id is taken (or
/// is `default`, the app of anonymous data) a random suffix is added.
pub async fn create_app(store: &dyn Store, name: &str) -> Result<(App, String), ManageError> {
    let (app, _, key) = create_app_with_key(store, name).await?;
    Ok((app, key))
}

/// [`create_app`], also returning the stored record of the first key (its
/// id and display prefix).
pub async fn create_app_with_key(
    store: &dyn Store,
    name: &str,
) -> Result<(App, ApiKey, String), ManageError> {
    let name = validate_name(name)?;
    let base = slug(&name);
    let mut attempt = 0;
    let app = loop {
        let id = if attempt == 0 && base != DEFAULT_APP {
            base.clone()
        } else {
            format!("{base}-{}", random_base62(6)?.to_ascii_lowercase())
        };
        let app = App {
            id,
            name: name.clone(),
            created_at_ns: crate::now_ns(),
        };
        match store.create_app(&app).await {
            Ok(()) => break app,
            Err(StoreError::Conflict(_)) if attempt < 5 => attempt += 1,
            Err(StoreError::Conflict(_)) => {
                return Err(ManageError::NoFreeId(format!("app \"{name}\"")));
            }
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(app = %app.id, "app created");
    let (record, key) = create_key(store, &app.id).await?;
    Ok((app, record, key))
}

/// Creates a new key for the app `app_id`; returns the stored record (hash
/// and display prefix) and the key in clear text, shown once.
pub async fn create_key(store: &dyn Store, app_id: &str) -> Result<(ApiKey, String), ManageError> {
    if store.get_app(app_id).await?.is_none() {
        return Err(ManageError::AppNotFound(app_id.to_string()));
    }
    for _ in 0..3 {
        let key = generate_key()?;
        let record = ApiKey {
            id: format!("key_{}", random_base62(16)?),
            app_id: app_id.to_string(),
            prefix: display_prefix(&key),
            hash: hash_key(&key),
            scopes: KEY_SCOPES.iter().map(|s| s.to_string()).collect(),
            created_at_ns: crate::now_ns(),
            revoked_at_ns: None,
        };
        match store.create_api_key(&record).await {
            Ok(()) => {
                tracing::info!(app = %app_id, key_id = %record.id, "API key created");
                return Ok((record, key));
            }
            // an id or hash collision: astronomically unlikely, draw again
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ManageError::NoFreeId(format!("a key of app \"{app_id}\"")))
}

/// Every app with its keys, apps by creation time.
pub async fn list_apps(store: &dyn Store) -> Result<Vec<AppWithKeys>, ManageError> {
    let apps = store.list_apps().await?;
    let mut out = Vec::with_capacity(apps.len());
    for app in apps {
        let keys = store.list_api_keys(&app.id).await?;
        out.push(AppWithKeys { app, keys });
    }
    Ok(out)
}

/// Revokes the key with id `key_id`; false when there is no such key.
/// Revoking a revoked key again succeeds and keeps the first revocation
/// time. Processes that cached the key notice within `auth.cache_ttl_ms`
/// (use [`crate::Authenticator::revoke_key`] to also drop it from the
/// caller's own cache at once).
pub async fn revoke_key(store: &dyn Store, key_id: &str) -> Result<bool, ManageError> {
    let revoked = store.revoke_api_key(key_id, crate::now_ns()).await?;
    if revoked {
        tracing::info!(key_id = %key_id, "API key revoked");
    }
    Ok(revoked)
}

fn validate_name(name: &str) -> Result<String, ManageError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ManageError::InvalidName(
            "the name must not be empty".into(),
        ));
    }
    if name.chars().count() > MAX_APP_NAME_CHARS {
        return Err(ManageError::InvalidName(format!(
            "the name must be at most {MAX_APP_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(ManageError::InvalidName(
            "the name must not contain control characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// `Checkout Ranking (EU)` → `checkout-ranking-eu`; `app` when nothing is left.
fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
            if out.len() >= MAX_SLUG_CHARS {
                break;
            }
        } else {
            dash = true;
        }
    }
    if out.is_empty() { "app".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Checkout Ranking (EU)"), "checkout-ranking-eu");
        assert_eq!(slug("  --a__b--  "), "a-b");
        assert_eq!(slug("日本"), "app");
        assert_eq!(slug(&"x".repeat(100)).len(), MAX_SLUG_CHARS);
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("  Shop ").unwrap(), "Shop");
        assert!(validate_name(" ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(201)).is_err());
        assert!(validate_name(&"é".repeat(200)).is_ok());
    }
}
