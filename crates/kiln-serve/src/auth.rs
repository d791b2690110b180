//! API keys and roles. Keys are kept as sha256 digests; a presented key is hashed and compared
//! with every stored digest in constant time (`subtle`), so neither the secret nor the timing of
//! the comparison tells which key matched. Only the key's configured name ever reaches logs and
//! metrics.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{KeyConfig, RoleConfig, ServeConfig};
use crate::error::{Result, ServeError};

/// Who is calling: a configured key with its role, or anyone when authentication is off.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The key's configured name (`"anonymous"` when authentication is off).
    pub name: String,
    /// What it may do.
    pub role: RoleConfig,
    /// The key's limits and budget.
    pub key: KeyConfig,
}

impl Principal {
    /// The principal used when no keys are configured: every model, adapter and endpoint, admin.
    #[must_use]
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: RoleConfig {
                models: vec!["*".into()],
                adapters: vec!["*".into()],
                endpoints: vec!["*".into()],
                admin: true,
            },
            key: KeyConfig {
                name: "anonymous".into(),
                ..KeyConfig::default()
            },
        }
    }

    /// Checks that the role may call `endpoint`.
    ///
    /// # Errors
    /// [`ServeError::Forbidden`].
    pub fn allow_endpoint(&self, endpoint: &str) -> Result<()> {
        if self.role.admin || listed(&self.role.endpoints, endpoint) {
            Ok(())
        } else {
            Err(ServeError::Forbidden(format!(
                "key `{}` may not call the `{endpoint}` endpoint",
                self.name
            )))
        }
    }

    /// Checks that the role may use `model` (a model or route name) and, when given, `adapter`.
    ///
    /// # Errors
    /// [`ServeError::Forbidden`].
    pub fn allow_model(&self, model: &str, adapter: Option<&str>) -> Result<()> {
        if !self.role.admin && !listed(&self.role.models, model) {
            return Err(ServeError::Forbidden(format!(
                "key `{}` may not use the model `{model}`",
                self.name
            )));
        }
        if let Some(a) = adapter
            && !self.role.admin
            && !listed(&self.role.adapters, a)
        {
            return Err(ServeError::Forbidden(format!(
                "key `{}` may not use the adapter `{a}`",
                self.name
            )));
        }
        Ok(())
    }

    /// Checks the admin flag.
    ///
    /// # Errors
    /// [`ServeError::Forbidden`].
    pub fn require_admin(&self) -> Result<()> {
        if self.role.admin {
            Ok(())
        } else {
            Err(ServeError::Forbidden(format!(
                "key `{}` is not an admin",
                self.name
            )))
        }
    }
}

fn listed(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == "*" || x == item)
}

/// The configured keys, by digest.
#[derive(Debug, Clone)]
pub struct KeyStore {
    keys: Vec<([u8; 32], KeyConfig)>,
    roles: BTreeMap<String, RoleConfig>,
}

impl KeyStore {
    /// Builds the store from a validated configuration.
    ///
    /// # Errors
    /// [`ServeError::Config`] for a digest that is not 64 hex digits.
    pub fn new(config: &ServeConfig) -> Result<Self> {
        let keys = config
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(k.sha256.to_ascii_lowercase(), &mut digest).map_err(|_| {
                    ServeError::config(format!("keys[{i}].sha256"), "must be 64 hex digits")
                })?;
                Ok((digest, k.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            keys,
            roles: config.roles.clone(),
        })
    }

    /// Whether keys are required.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Authenticates a request from its `Authorization: Bearer <key>` (or `api-key`) header.
    ///
    /// # Errors
    /// [`ServeError::Unauthorized`] for a missing or unknown key.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let presented = bearer(headers).ok_or_else(|| {
            ServeError::Unauthorized("no API key: send `Authorization: Bearer <key>`".to_owned())
        })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare with every key, without an early exit, so timing does not tell which matched.
        let mut found: Option<&KeyConfig> = None;
        for (stored, key) in &self.keys {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        let key =
            found.ok_or_else(|| ServeError::Unauthorized("the API key is not valid".to_owned()))?;
        let role = self
            .roles
            .get(&key.role)
            .cloned()
            .ok_or_else(|| ServeError::Internal(format!("role `{}` vanished", key.role)))?;
        Ok(Principal {
            name: key.name.clone(),
            role,
            key: key.clone(),
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?
            .trim();
        return (!token.is_empty()).then_some(token);
    }
    headers
        .get("api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The hex sha256 of a secret, as the configuration stores it.
#[must_use]
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    fn store() -> KeyStore {
        let mut roles = BTreeMap::new();
        roles.insert(
            "user".to_owned(),
            RoleConfig {
                models: vec!["m".into()],
                endpoints: vec!["chat".into()],
                ..RoleConfig::default()
            },
        );
        let config = ServeConfig {
            models: vec![ModelConfig {
                name: "m".into(),
                ..ModelConfig::default()
            }],
            roles,
            keys: vec![KeyConfig {
                name: "alice".into(),
                sha256: hash_key("sk-alice"),
                role: "user".into(),
                ..KeyConfig::default()
            }],
            ..ServeConfig::default()
        };
        KeyStore::new(&config).unwrap()
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn keys_and_roles() {
        let s = store();
        let p = s.authenticate(&headers("Bearer sk-alice")).unwrap();
        assert_eq!(p.name, "alice");
        assert!(p.allow_endpoint("chat").is_ok());
        assert!(p.allow_endpoint("embeddings").is_err());
        assert!(p.allow_model("m", None).is_ok());
        assert!(p.allow_model("m", Some("retail")).is_err());
        assert!(p.allow_model("other", None).is_err());
        assert!(p.require_admin().is_err());
        assert!(s.authenticate(&headers("Bearer sk-bob")).is_err());
        assert!(s.authenticate(&HeaderMap::new()).is_err());
        assert!(s.authenticate(&headers("Basic sk-alice")).is_err());
    }
}
