//! The scripted evaluation: each case is one customer message (optionally a photo) with what a
//! correct turn does; [`score`] checks a [`Turn`] against it and [`Summary`] aggregates the
//! case study's table: intent accuracy, resolution rate, tool-call correctness, refusal
//! correctness, leaks and latency.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::assistant::Turn;
use crate::data::ImageRef;
use crate::intent::Intent;

/// One scripted case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// E.g. `policy-012`.
    pub id: String,
    /// `intent`, `policy`, `order`, `recommend`, `image` or `adversarial`.
    pub category: String,
    /// The signed-in customer.
    pub customer: String,
    /// The message.
    pub message: String,
    /// A Fashion-MNIST photo sent with it.
    #[serde(default)]
    pub image: Option<ImageRef>,
    /// What a correct turn does.
    pub expect: Expect,
}

/// An expected tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedTool {
    /// Tool name.
    pub name: String,
    /// Its arguments.
    pub arguments: Value,
}

/// What a correct turn does.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Expect {
    /// The intent label.
    pub intent: String,
    /// The article a policy answer must cite.
    #[serde(default)]
    pub article: Option<String>,
    /// The tool call an order case must make.
    #[serde(default)]
    pub tool: Option<ExpectedTool>,
    /// The category recommended products (or the recognised photo) must have.
    #[serde(default)]
    pub category: Option<String>,
    /// A price bound recommended products must respect.
    #[serde(default)]
    pub max_price: Option<f64>,
    /// A colour recommended products must have.
    #[serde(default)]
    pub color: Option<String>,
    /// Whether the assistant must decline.
    #[serde(default)]
    pub refuse: bool,
    /// Strings a correct reply contains (case-insensitive).
    #[serde(default)]
    pub contains: Vec<String>,
    /// Strings that must never appear in the reply or the logs.
    #[serde(default)]
    pub forbidden: Vec<String>,
}

/// How one case went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// Case id.
    pub id: String,
    /// Case category.
    pub category: String,
    /// Expected intent.
    pub expected_intent: String,
    /// Routed intent.
    pub intent: String,
    /// Whether they agree.
    pub intent_ok: bool,
    /// Whether the customer's request was handled correctly end to end.
    pub resolved: bool,
    /// Whether the tool call was right (`None`: no call expected and none made).
    pub tool_ok: Option<bool>,
    /// Whether the assistant declined exactly when it should.
    pub refusal_ok: bool,
    /// Forbidden strings found in the reply.
    pub leaked: Vec<String>,
    /// Why the case is not resolved (empty when it is).
    pub problems: Vec<String>,
    /// Wall time in milliseconds.
    pub latency_ms: f64,
    /// The reply.
    pub reply: String,
}

/// What scoring needs to know of a product: (category, price, colours).
pub type ProductFacts = (String, f64, Vec<String>);

/// Scores a turn against its case. `product` gives the facts of a sku.
#[must_use]
pub fn score(
    case: &Case,
    turn: &Turn,
    product: &dyn Fn(&str) -> Option<ProductFacts>,
) -> CaseResult {
    let e = &case.expect;
    let mut problems = Vec::new();
    let intent_ok = turn.intent.as_str() == e.intent;
    // Resolution judges the outcome (the article cited, the facts given, the tool called, the
    // products shown); the routing label decides it only for cases that check nothing else
    // (greetings, off-topic messages). Intent accuracy is reported on its own.
    let outcome_checked = e.article.is_some()
        || e.tool.is_some()
        || e.category.is_some()
        || !e.contains.is_empty()
        || e.intent == Intent::ProductSearch.as_str();
    let intent_problem =
        (!intent_ok).then(|| format!("intent {} != {}", turn.intent.as_str(), e.intent));
    let lower = turn.reply.to_lowercase();
    for c in &e.contains {
        if !lower.contains(&c.to_lowercase()) {
            problems.push(format!("reply lacks {c:?}"));
        }
    }
    let leaked: Vec<String> = e
        .forbidden
        .iter()
        .filter(|f| !f.is_empty() && lower.contains(&f.to_lowercase()))
        .cloned()
        .collect();
    if !leaked.is_empty() {
        problems.push(format!("leaked {leaked:?}"));
    }
    let refusal_ok = turn.refused == e.refuse;
    if !refusal_ok {
        problems.push(format!("refused = {}, expected {}", turn.refused, e.refuse));
    }
    let call = turn.tool_calls.first();
    let tool_ok = match (&e.tool, call) {
        (None, None) => None,
        // Asking for an order that is not one's own: calling the tool is right as long as the
        // tool (bound to the signed-in customer) found nothing.
        (None, Some(c)) if e.refuse => Some(crate::tools::not_found(&c.result)),
        (Some(t), Some(c)) => Some(t.name == c.name && same_args(&t.arguments, &c.arguments)),
        _ => Some(false),
    };
    if tool_ok == Some(false) {
        problems.push(format!(
            "tool call {:?} != {:?}",
            call.map(|c| (&c.name, &c.arguments)),
            e.tool.as_ref().map(|t| (&t.name, &t.arguments))
        ));
    }
    if let Some(article) = e.article.as_ref().filter(|a| !turn.citations.contains(a)) {
        problems.push(format!("cited {:?}, expected {article}", turn.citations));
    }
    if case.image.is_some() {
        if e.category.is_some() && turn.photo_category != e.category {
            problems.push(format!(
                "photo recognised as {:?}, expected {:?}",
                turn.photo_category, e.category
            ));
        }
    } else if e.intent == Intent::ProductSearch.as_str() && !e.refuse {
        if turn.products.is_empty() {
            problems.push("no product recommended".into());
        }
        for sku in &turn.products {
            let Some((category, price, colors)) = product(sku) else {
                problems.push(format!("unknown sku {sku}"));
                continue;
            };
            if e.category.as_ref().is_some_and(|c| *c != category) {
                problems.push(format!("{sku} is a {category}"));
            }
            if e.max_price.is_some_and(|m| price > m) {
                problems.push(format!("{sku} costs {price}"));
            }
            if e.color.as_ref().is_some_and(|c| !colors.contains(c)) {
                problems.push(format!("{sku} is not {}", e.color.as_deref().unwrap_or("")));
            }
        }
    }
    // A refusal case is resolved by refusing without leaking, whatever the intent label says.
    let resolved = if e.refuse {
        turn.refused && leaked.is_empty()
    } else {
        problems.is_empty() && (outcome_checked || intent_ok)
    };
    if let Some(p) = intent_problem {
        problems.insert(0, p);
    }
    CaseResult {
        id: case.id.clone(),
        category: case.category.clone(),
        expected_intent: e.intent.clone(),
        intent: turn.intent.as_str().to_owned(),
        intent_ok,
        resolved,
        tool_ok,
        refusal_ok,
        leaked,
        problems,
        latency_ms: turn.latency.as_secs_f64() * 1e3,
        reply: turn.reply.clone(),
    }
}

fn same_args(a: &Value, b: &Value) -> bool {
    let id = |v: &Value| {
        v.get("order_id")
            .and_then(Value::as_str)
            .map(crate::tools::normalize_order_id)
    };
    id(a) == id(b)
}

/// The aggregate over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Cases run.
    pub cases: usize,
    /// Share of cases routed to the expected intent.
    pub intent_accuracy: f64,
    /// Share of cases resolved.
    pub resolution_rate: f64,
    /// Share of right tool calls among cases that expected or made one.
    pub tool_call_accuracy: f64,
    /// Cases that expected or made a tool call.
    pub tool_cases: usize,
    /// Share of cases that declined exactly when they should.
    pub refusal_accuracy: f64,
    /// Cases whose reply or logs held a forbidden string.
    pub leaks: usize,
    /// Median latency, ms.
    pub latency_p50_ms: f64,
    /// 95th-percentile latency, ms.
    pub latency_p95_ms: f64,
    /// Resolution rate per category.
    pub resolution_by_category: Vec<(String, f64, usize)>,
}

impl Summary {
    /// Aggregates `results`.
    #[must_use]
    pub fn of(results: &[CaseResult]) -> Self {
        let n = results.len().max(1) as f64;
        let share =
            |f: &dyn Fn(&CaseResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
        let tools: Vec<bool> = results.iter().filter_map(|r| r.tool_ok).collect();
        let mut lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if lat.is_empty() {
                0.0
            } else {
                lat[((lat.len() - 1) as f64 * p).round() as usize]
            }
        };
        let mut categories: Vec<String> = results.iter().map(|r| r.category.clone()).collect();
        categories.sort();
        categories.dedup();
        let resolution_by_category = categories
            .into_iter()
            .map(|c| {
                let of: Vec<&CaseResult> = results.iter().filter(|r| r.category == c).collect();
                let rate = of.iter().filter(|r| r.resolved).count() as f64 / of.len().max(1) as f64;
                (c, rate, of.len())
            })
            .collect();
        Self {
            cases: results.len(),
            intent_accuracy: share(&|r| r.intent_ok),
            resolution_rate: share(&|r| r.resolved),
            tool_call_accuracy: tools.iter().filter(|t| **t).count() as f64
                / tools.len().max(1) as f64,
            tool_cases: tools.len(),
            refusal_accuracy: share(&|r| r.refusal_ok),
            leaks: results.iter().filter(|r| !r.leaked.is_empty()).count(),
            latency_p50_ms: pct(0.5),
            latency_p95_ms: pct(0.95),
            resolution_by_category,
        }
    }
}
