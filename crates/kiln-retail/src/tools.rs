//! The order tools the assistant calls (ReAct actions), each bound to the signed-in customer: an
//! order of another customer is "not found", whoever asks and however the question is phrased.

use std::sync::Arc;

use chrono::NaiveDate;
use kiln_core::Tool;
use serde_json::{Value, json};

use crate::store::{ReturnOutcome, Store};

/// Which order tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderTool {
    /// Status, date and items of an order.
    LookupOrder,
    /// Carrier, tracking number and events.
    TrackShipment,
    /// Opens a return.
    StartReturn,
}

impl OrderTool {
    /// Every tool.
    pub const ALL: [OrderTool; 3] = [
        OrderTool::LookupOrder,
        OrderTool::TrackShipment,
        OrderTool::StartReturn,
    ];

    /// The name the model calls it by.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            OrderTool::LookupOrder => "lookup_order",
            OrderTool::TrackShipment => "track_shipment",
            OrderTool::StartReturn => "start_return",
        }
    }

    /// The tool that serves an order intent (lookup for anything but tracking and returns).
    #[must_use]
    pub fn for_intent(intent: crate::Intent) -> Self {
        match intent {
            crate::Intent::TrackShipment => OrderTool::TrackShipment,
            crate::Intent::ReturnRequest => OrderTool::StartReturn,
            _ => OrderTool::LookupOrder,
        }
    }

    /// The call the model writes for this tool on `order_id` (the Action's JSON).
    #[must_use]
    pub fn call_json(self, order_id: &str) -> String {
        json!({"name": self.name(), "arguments": {"order_id": order_id}}).to_string()
    }

    /// The tool of a name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What it does, for the model.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            OrderTool::LookupOrder => {
                "Status, order date and items of one of the customer's orders."
            }
            OrderTool::TrackShipment => {
                "Carrier, tracking number and latest tracking events of one of the customer's orders."
            }
            OrderTool::StartReturn => {
                "Opens a return for a delivered order of the customer (within the return window)."
            }
        }
    }
}

/// An order tool acting for one customer.
#[derive(Debug, Clone)]
pub struct BoundTool {
    tool: OrderTool,
    store: Arc<Store>,
    customer: String,
    today: NaiveDate,
    window_days: i64,
}

impl BoundTool {
    /// `tool` acting for `customer`; returns are judged on `today` with a `window_days` window.
    #[must_use]
    pub fn new(
        tool: OrderTool,
        store: Arc<Store>,
        customer: impl Into<String>,
        today: NaiveDate,
        window_days: i64,
    ) -> Self {
        Self {
            tool,
            store,
            customer: customer.into(),
            today,
            window_days,
        }
    }

    /// Runs the tool and returns its structured result.
    ///
    /// # Errors
    /// A missing `order_id` argument or a store failure.
    pub fn run(&self, args: &Value) -> kiln_core::Result<Value> {
        let order_id = args
            .get("order_id")
            .and_then(Value::as_str)
            .ok_or_else(|| kiln_core::Error::InvalidParameter {
                name: "order_id",
                message: "a string argument is required".into(),
            })?;
        let order_id = normalize_order_id(order_id);
        let store_err = |e: crate::RetailError| kiln_core::Error::Model(e.to_string());
        if self.tool == OrderTool::StartReturn {
            let outcome = self
                .store
                .start_return(&self.customer, &order_id, self.today, self.window_days)
                .map_err(store_err)?;
            return Ok(json!({"order_id": order_id, "return": outcome}));
        }
        let Some(order) = self
            .store
            .order(&self.customer, &order_id)
            .map_err(store_err)?
        else {
            return Ok(json!({"order_id": order_id, "found": false}));
        };
        Ok(match self.tool {
            OrderTool::LookupOrder => json!({
                "order_id": order.id, "found": true, "status": order.status, "placed": order.placed,
                "items": order.items, "delivered": order.shipping.delivered,
            }),
            _ => json!({
                "order_id": order.id, "found": true, "status": order.status,
                "carrier": order.shipping.carrier, "tracking": order.shipping.tracking,
                "events": order.shipping.events, "delivered": order.shipping.delivered,
            }),
        })
    }
}

impl Tool for BoundTool {
    fn name(&self) -> &str {
        self.tool.name()
    }

    fn description(&self) -> &str {
        self.tool.description()
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "e.g. KO-482913"}},
            "required": ["order_id"],
        })
    }

    fn call(&self, args: &Value) -> kiln_core::Result<String> {
        Ok(self.run(args)?.to_string())
    }
}

/// `KO-123456` from `ko123456`, `KO 123456` or `#KO-123456`.
#[must_use]
pub fn normalize_order_id(id: &str) -> String {
    let digits: String = id.chars().filter(char::is_ascii_digit).collect();
    format!("KO-{digits}")
}

/// The order numbers written in a message, normalised, in order of appearance, without repeats.
#[must_use]
pub fn order_ids_in(text: &str) -> Vec<String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\bKO[\s#-]?(\d{6})\b").expect("valid regex")
    });
    let mut out: Vec<String> = Vec::new();
    for c in RE.captures_iter(text) {
        let id = format!("KO-{}", &c[1]);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// Whether a tool result says the order was not on the customer's account.
#[must_use]
pub fn not_found(result: &Value) -> bool {
    result.get("found") == Some(&Value::Bool(false))
        || matches!(result.pointer("/return/outcome"), Some(Value::String(s)) if s == "not_found")
}

/// Reads a [`ReturnOutcome`] back from a tool result.
#[must_use]
pub fn return_outcome(result: &Value) -> Option<ReturnOutcome> {
    let r = result.get("return")?;
    let s = |k: &str| {
        r.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some(match r.get("outcome")?.as_str()? {
        "started" => ReturnOutcome::Started {
            rma: s("rma"),
            ship_by: s("ship_by"),
        },
        "already_started" => ReturnOutcome::AlreadyStarted { rma: s("rma") },
        "not_delivered" => ReturnOutcome::NotDelivered {
            status: s("status"),
        },
        "outside_window" => ReturnOutcome::OutsideWindow {
            delivered: s("delivered"),
            window_days: r.get("window_days").and_then(Value::as_i64).unwrap_or(0),
        },
        _ => ReturnOutcome::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_order_ids() {
        assert_eq!(
            order_ids_in("is ko482913 or KO-482913 or #KO 100200 here? not KO-1234567"),
            ["KO-482913", "KO-100200"]
        );
        assert_eq!(normalize_order_id("ko 482913"), "KO-482913");
    }
}
