//! Prometheus metrics, written in the text exposition format by hand (no client library): counters,
//! gauges and histograms with labels. Key names (never secrets) label per-key series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: name, kind, help.
const METRICS: &[(&str, Kind, &str)] = &[
    (
        "kiln_app_events_total",
        Kind::Counter,
        "Events counted by an application served with kiln-serve (kiln-retail: turns by intent and outcome, feedback by rating).",
    ),
    (
        "kiln_requests_total",
        Kind::Counter,
        "HTTP requests by endpoint and status.",
    ),
    (
        "kiln_request_duration_seconds",
        Kind::Histogram,
        "Request latency by endpoint.",
    ),
    (
        "kiln_time_to_first_token_seconds",
        Kind::Histogram,
        "Time from admission to the first streamed token.",
    ),
    (
        "kiln_inter_token_latency_seconds",
        Kind::Histogram,
        "Time between two streamed tokens.",
    ),
    (
        "kiln_decode_tokens_per_second",
        Kind::Histogram,
        "Decode speed of each generation.",
    ),
    (
        "kiln_tokens_total",
        Kind::Counter,
        "Tokens by model and kind (prompt, completion).",
    ),
    (
        "kiln_key_tokens_total",
        Kind::Counter,
        "Tokens by API key name.",
    ),
    (
        "kiln_key_requests_total",
        Kind::Counter,
        "Requests by API key name.",
    ),
    (
        "kiln_cost_total",
        Kind::Counter,
        "Cost by API key name and model.",
    ),
    (
        "kiln_budget_alerts_total",
        Kind::Counter,
        "Budget alerts fired, by key and threshold.",
    ),
    (
        "kiln_queue_depth",
        Kind::Gauge,
        "Requests waiting for a generation slot, by model.",
    ),
    (
        "kiln_active_sequences",
        Kind::Gauge,
        "Sequences generating, by model.",
    ),
    (
        "kiln_batch_size",
        Kind::Histogram,
        "Sequences per decode step of a batching model.",
    ),
    (
        "kiln_cache_hits_total",
        Kind::Counter,
        "Exact response cache hits.",
    ),
    (
        "kiln_cache_misses_total",
        Kind::Counter,
        "Exact response cache misses (cacheable requests).",
    ),
    (
        "kiln_pii_masked_total",
        Kind::Counter,
        "Masked values of personal data, by kind.",
    ),
    (
        "kiln_filter_actions_total",
        Kind::Counter,
        "Output filter blocks and redactions, by policy and action.",
    ),
    (
        "kiln_cascade_escalations_total",
        Kind::Counter,
        "Cascade escalations, by route and the model escalated from.",
    ),
    (
        "kiln_rejected_total",
        Kind::Counter,
        "Requests refused by the gateway or engine, by reason.",
    ),
    (
        "kiln_config_reloads_total",
        Kind::Counter,
        "Configuration reloads (SIGHUP or /v1/admin/reload), by result: ok or rejected.",
    ),
];

fn buckets(name: &str) -> &'static [f64] {
    match name {
        "kiln_inter_token_latency_seconds" => {
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
        }
        "kiln_decode_tokens_per_second" => {
            &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
        }
        "kiln_batch_size" => &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        _ => &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ],
    }
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Registry {
    values: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
}

impl Metrics {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `v` to a counter or gauge.
    pub fn add(&self, name: &'static str, labels: Labels, v: f64) {
        if let Ok(mut r) = self.registry.lock() {
            *r.values.entry((name, labels)).or_insert(0.0) += v;
        }
    }

    /// Adds 1 to a counter.
    pub fn inc(&self, name: &'static str, labels: Labels) {
        self.add(name, labels, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: Labels, v: f64) {
        if let Ok(mut r) = self.registry.lock() {
            r.values.insert((name, labels), v);
        }
    }

    /// The current value of a counter or gauge (0 when absent).
    #[must_use]
    pub fn get(&self, name: &'static str, labels: &Labels) -> f64 {
        self.registry
            .lock()
            .ok()
            .and_then(|r| r.values.get(&(name, labels.clone())).copied())
            .unwrap_or(0.0)
    }

    /// Records an observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: Labels, v: f64) {
        let bounds = buckets(name);
        if let Ok(mut r) = self.registry.lock() {
            let h = r
                .histograms
                .entry((name, labels))
                .or_insert_with(|| Histogram {
                    counts: vec![0; bounds.len()],
                    ..Histogram::default()
                });
            for (c, b) in h.counts.iter_mut().zip(bounds) {
                if v <= *b {
                    *c += 1;
                }
            }
            h.sum += v;
            h.count += 1;
        }
    }

    /// The number of observations of a histogram series.
    #[must_use]
    pub fn observations(&self, name: &'static str, labels: &Labels) -> u64 {
        self.registry
            .lock()
            .ok()
            .and_then(|r| r.histograms.get(&(name, labels.clone())).map(|h| h.count))
            .unwrap_or(0)
    }

    /// The Prometheus text exposition of every series.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(r) = self.registry.lock() else {
            return out;
        };
        for (name, kind, help) in METRICS {
            let _ = writeln!(out, "# HELP {name} {help}");
            let t = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# TYPE {name} {t}");
            if *kind == Kind::Histogram {
                for ((n, labels), h) in r.histograms.iter().filter(|((n, _), _)| n == name) {
                    for (c, b) in h.counts.iter().zip(buckets(n)) {
                        let le = format_labels(labels, Some(&b.to_string()));
                        let _ = writeln!(out, "{n}_bucket{le} {c}");
                    }
                    let inf = format_labels(labels, Some("+Inf"));
                    let _ = writeln!(out, "{n}_bucket{inf} {}", h.count);
                    let l = format_labels(labels, None);
                    let _ = writeln!(out, "{n}_sum{l} {}", h.sum);
                    let _ = writeln!(out, "{n}_count{l} {}", h.count);
                }
            } else {
                for ((n, labels), v) in r.values.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{n}{} {v}", format_labels(labels, None));
                }
            }
        }
        out
    }
}

fn format_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `vec![("model", m)]`, the most common label set.
#[must_use]
pub fn model_label(model: &str) -> Labels {
    vec![("model", model.to_owned())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_exposition_format() {
        let m = Metrics::new();
        m.inc(
            "kiln_requests_total",
            vec![("endpoint", "chat".into()), ("status", "200".into())],
        );
        m.set("kiln_queue_depth", model_label("a\"b"), 2.0);
        m.observe(
            "kiln_request_duration_seconds",
            vec![("endpoint", "chat".into())],
            0.02,
        );
        let text = m.render();
        assert!(
            text.contains("kiln_requests_total{endpoint=\"chat\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kiln_queue_depth{model=\"a\\\"b\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kiln_request_duration_seconds_bucket{endpoint=\"chat\",le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kiln_request_duration_seconds_bucket{endpoint=\"chat\",le=\"0.01\"} 0"),
            "{text}"
        );
        assert!(text.contains("# TYPE kiln_active_sequences gauge"));
    }
}
