//! Cost control: token accounting per key and per model with the configured prices, budgets with
//! alert thresholds (a log line, a metric and an optional webhook), and the data behind
//! `GET /v1/usage`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{BudgetConfig, KeyConfig, Prices};
use crate::error::{Result, ServeError};
use crate::metrics::Metrics;

/// Usage of one key on one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    /// Requests answered.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Cost at the configured prices.
    pub cost: f64,
}

/// Usage of one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyUsage {
    /// The key's name.
    pub key: String,
    /// Its budget, if it has one.
    pub budget: Option<f64>,
    /// Total cost so far.
    pub cost: f64,
    /// Per model.
    pub models: BTreeMap<String, ModelUsage>,
}

#[derive(Debug, Default)]
struct Ledger {
    keys: BTreeMap<String, KeyUsage>,
    /// `(key, threshold)` alerts already fired.
    fired: BTreeSet<(String, u64)>,
}

/// A budget alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetAlert {
    /// The key's name.
    pub key: String,
    /// The fraction of the budget crossed.
    pub threshold: f64,
    /// Spent so far.
    pub spent: f64,
    /// The budget.
    pub budget: f64,
}

/// The usage ledger.
#[derive(Debug)]
pub struct CostTracker {
    ledger: Mutex<Ledger>,
    config: BudgetConfig,
    metrics: Arc<Metrics>,
}

impl CostTracker {
    /// An empty ledger.
    #[must_use]
    pub fn new(config: BudgetConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            ledger: Mutex::new(Ledger::default()),
            config,
            metrics,
        }
    }

    /// Refuses a request when the key's budget is spent and budgets are enforced.
    ///
    /// # Errors
    /// [`ServeError::QuotaExceeded`].
    pub fn check(&self, key: &KeyConfig) -> Result<()> {
        let (Some(budget), true) = (key.budget, self.config.enforce) else {
            return Ok(());
        };
        let spent = self
            .ledger
            .lock()
            .map_err(|_| ServeError::Internal("ledger lock poisoned".into()))?
            .keys
            .get(&key.name)
            .map_or(0.0, |u| u.cost);
        if spent >= budget {
            return Err(ServeError::QuotaExceeded {
                message: format!("key `{}` has spent its budget of {budget}", key.name),
                retry_after: 3600,
            });
        }
        Ok(())
    }

    /// Records one answered request; returns the alerts it fired (already logged, counted and
    /// sent to the webhook).
    pub fn record(
        &self,
        key: &KeyConfig,
        model: &str,
        prices: Prices,
        prompt_tokens: usize,
        completion_tokens: usize,
    ) -> Vec<BudgetAlert> {
        let cost = prompt_tokens as f64 / 1000.0 * prices.prompt_per_1k
            + completion_tokens as f64 / 1000.0 * prices.completion_per_1k;
        let key_label = vec![("key", key.name.clone())];
        self.metrics.add(
            "kiln_key_tokens_total",
            key_label.clone(),
            (prompt_tokens + completion_tokens) as f64,
        );
        self.metrics.inc("kiln_key_requests_total", key_label);
        self.metrics.add(
            "kiln_cost_total",
            vec![("key", key.name.clone()), ("model", model.to_owned())],
            cost,
        );
        let Ok(mut ledger) = self.ledger.lock() else {
            return Vec::new();
        };
        let usage = ledger
            .keys
            .entry(key.name.clone())
            .or_insert_with(|| KeyUsage {
                key: key.name.clone(),
                budget: key.budget,
                ..KeyUsage::default()
            });
        let m = usage.models.entry(model.to_owned()).or_default();
        m.requests += 1;
        m.prompt_tokens += prompt_tokens as u64;
        m.completion_tokens += completion_tokens as u64;
        m.cost += cost;
        usage.cost += cost;
        let spent = usage.cost;
        let mut alerts = Vec::new();
        if let Some(budget) = key.budget.filter(|b| *b > 0.0) {
            for t in &self.config.alert_thresholds {
                let id = (key.name.clone(), (t * 1e6) as u64);
                if spent >= t * budget && !ledger.fired.contains(&id) {
                    ledger.fired.insert(id);
                    alerts.push(BudgetAlert {
                        key: key.name.clone(),
                        threshold: *t,
                        spent,
                        budget,
                    });
                }
            }
        }
        drop(ledger);
        for a in &alerts {
            tracing::warn!(key = %a.key, threshold = a.threshold, spent = a.spent, budget = a.budget, "budget alert");
            self.metrics.inc(
                "kiln_budget_alerts_total",
                vec![
                    ("key", a.key.clone()),
                    ("threshold", a.threshold.to_string()),
                ],
            );
            if let Some(url) = &self.config.webhook {
                send_webhook(url.clone(), a.clone());
            }
        }
        alerts
    }

    /// Usage of one key, or of every key.
    #[must_use]
    pub fn usage(&self, key: Option<&str>) -> Vec<KeyUsage> {
        let Ok(ledger) = self.ledger.lock() else {
            return Vec::new();
        };
        ledger
            .keys
            .values()
            .filter(|u| key.is_none_or(|k| u.key == k))
            .cloned()
            .collect()
    }
}

/// POSTs an alert as JSON to an `http://host[:port]/path` URL, in the background, once; failures
/// are logged.
fn send_webhook(url: String, alert: BudgetAlert) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        if let Err(e) = post_json(&url, &alert).await {
            tracing::warn!(error = %e, "budget webhook failed");
        }
    });
}

async fn post_json(url: &str, body: &impl Serialize) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// webhooks"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let payload = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let mut stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(std::io::Error::other)??;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&payload).await?;
    let mut status = [0u8; 12];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut status)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_alerts_and_budget() {
        let t = CostTracker::new(BudgetConfig::default(), Arc::new(Metrics::new()));
        let key = KeyConfig {
            name: "a".into(),
            budget: Some(1.0),
            ..KeyConfig::default()
        };
        let prices = Prices {
            prompt_per_1k: 0.5,
            completion_per_1k: 1.0,
        };
        assert!(
            t.record(&key, "m", prices, 1000, 0)
                .iter()
                .any(|a| a.threshold == 0.5)
        );
        assert!(t.check(&key).is_ok());
        let alerts = t.record(&key, "m", prices, 0, 500);
        assert_eq!(
            alerts.iter().map(|a| a.threshold).collect::<Vec<_>>(),
            vec![0.8, 1.0]
        );
        assert!(t.check(&key).is_err());
        let u = t.usage(Some("a"));
        assert_eq!(u[0].models["m"].requests, 2);
        assert!((u[0].cost - 1.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn alerts_are_posted_to_the_webhook() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let config = BudgetConfig {
            webhook: Some(url),
            alert_thresholds: vec![0.5],
            enforce: false,
        };
        let t = CostTracker::new(config, Arc::new(Metrics::new()));
        let key = KeyConfig {
            name: "a".into(),
            budget: Some(1.0),
            ..KeyConfig::default()
        };
        let prices = Prices {
            prompt_per_1k: 1.0,
            completion_per_1k: 0.0,
        };
        assert_eq!(t.record(&key, "m", prices, 600, 0).len(), 1);
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = String::new();
        while !got.contains("\"threshold\"") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "{got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.starts_with("POST /hook HTTP/1.1"), "{got}");
        assert!(got.contains("\"key\":\"a\""), "{got}");
        conn.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
    }
}
