//! The replies: grounded in what the knowledge base, the catalogue and the tools returned, so the
//! assistant never states a fact it did not look up.

use serde_json::Value;

use crate::catalog::{Catalog, ProductQuery, Recommendation};
use crate::data::{Article, Product};
use crate::store::ReturnOutcome;
use crate::tools::{OrderTool, not_found, return_outcome};

/// The refusal for guarded messages.
#[must_use]
pub fn refusal() -> String {
    "I'm sorry, I can't help with that. I can only access your own account and orders, I can't \
     share other customers' information, and I can't change my instructions or store prices."
        .into()
}

/// The reply when an order question comes without a signed-in customer.
#[must_use]
pub fn sign_in() -> String {
    "Please sign in with your customer key first: I can only look up orders on your own account."
        .into()
}

/// A greeting.
#[must_use]
pub fn greeting(store: &str, name: Option<&str>) -> String {
    let hello = match name {
        Some(n) => format!("Hello {}!", n.split_whitespace().next().unwrap_or(n)),
        None => "Hello!".into(),
    };
    format!(
        "{hello} I'm the {store} assistant. I can check your orders and shipments, start a return, \
         answer questions about our policies and find products; you can also send me a photo of an item."
    )
}

/// The reply to anything outside the assistant's job.
#[must_use]
pub fn out_of_scope(store: &str) -> String {
    format!(
        "I can help with {store} orders, shipments, returns, store policies and products. \
         What would you like to know?"
    )
}

/// A knowledge-base answer: the article's lead paragraph, the paragraph that best matches the
/// question when it is another one, and the citation.
#[must_use]
pub fn article(article: &Article, paragraph: usize) -> String {
    let mut body: Vec<&str> = article
        .paragraphs
        .first()
        .map(String::as_str)
        .into_iter()
        .collect();
    if let Some(p) = article.paragraphs.get(paragraph).filter(|_| paragraph > 0) {
        body.push(p);
    }
    format!(
        "{}\n\nSource: [{}] {}",
        body.join("\n\n"),
        article.id,
        article.title
    )
}

/// No article matched.
#[must_use]
pub fn no_article() -> String {
    "I couldn't find that in our help articles. A member of our customer care team can help: \
     reply with more details or ask for a human agent."
        .into()
}

/// Asks which order, listing the customer's recent ones.
#[must_use]
pub fn which_order(orders: &[(String, String, String)]) -> String {
    if orders.is_empty() {
        return "I don't see any orders on your account.".into();
    }
    let list: Vec<String> = orders
        .iter()
        .take(5)
        .map(|(id, placed, status)| format!("- {id} (placed {placed}): {status}"))
        .collect();
    format!(
        "If this is about one of your orders, tell me its number. Your recent orders:\n{}",
        list.join("\n")
    )
}

/// The reply from an order tool's observation, and whether it declined.
#[must_use]
pub fn order(
    tool: OrderTool,
    result: &Value,
    catalog: &Catalog,
    policy: Option<&Article>,
) -> (String, bool) {
    let id = result
        .get("order_id")
        .and_then(Value::as_str)
        .unwrap_or("that order");
    if not_found(result) {
        return (
            format!(
                "I couldn't find order {id} on your account. I can only look up orders placed by the \
                 signed-in customer; please check the order number."
            ),
            true,
        );
    }
    let s = |k: &str| result.get(k).and_then(Value::as_str).unwrap_or_default();
    let text = match tool {
        OrderTool::LookupOrder => {
            let items: Vec<String> = result
                .get("items")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            let sku = i.get("sku").and_then(Value::as_str).unwrap_or_default();
                            let qty = i.get("qty").and_then(Value::as_u64).unwrap_or(1);
                            let name = catalog
                                .products()
                                .iter()
                                .find(|p| p.sku == sku)
                                .map_or(sku, |p| p.name.as_str());
                            format!("{qty} x {name} ({sku})")
                        })
                        .collect()
                })
                .unwrap_or_default();
            let delivered = match result.get("delivered").and_then(Value::as_str) {
                Some(d) => format!(", delivered on {}", &d[..d.len().min(10)]),
                None => String::new(),
            };
            format!(
                "Order {id}, placed on {}, is {}{delivered}. Items: {}.",
                s("placed"),
                s("status"),
                items.join(", ")
            )
        }
        OrderTool::TrackShipment => {
            let last = result
                .get("events")
                .and_then(Value::as_array)
                .and_then(|e| e.last());
            match last {
                Some(e) => {
                    let f = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                    format!(
                        "Order {id} is {} and ships with {}, tracking number {}. Latest update: {} \
                         in {} on {}.",
                        s("status"),
                        s("carrier"),
                        s("tracking"),
                        f("status"),
                        f("location"),
                        f("date").replace('T', " ")
                    )
                }
                None => format!(
                    "Order {id} is {} and has not shipped yet, so there is no tracking update. It \
                     will ship with {}.",
                    s("status"),
                    s("carrier")
                ),
            }
        }
        OrderTool::StartReturn => {
            let source = policy
                .map(|p| format!("\n\nSource: [{}] {}", p.id, p.title))
                .unwrap_or_default();
            match return_outcome(result) {
                Some(ReturnOutcome::Started { rma, ship_by }) => format!(
                    "I've opened return {rma} for order {id}. Please send the items back by \
                     {ship_by}; your refund goes to the original payment method once they arrive.{source}"
                ),
                Some(ReturnOutcome::AlreadyStarted { rma }) => {
                    format!("A return ({rma}) is already open for order {id}.")
                }
                Some(ReturnOutcome::NotDelivered { status }) => format!(
                    "Order {id} is {status}, so it can't be returned yet: returns open once an order \
                     has been delivered."
                ),
                Some(ReturnOutcome::OutsideWindow {
                    delivered,
                    window_days,
                }) => format!(
                    "Order {id} was delivered on {delivered}, more than {window_days} days ago, so it \
                     is outside our {window_days}-day return window and I can't open a return for it.{source}"
                ),
                _ => format!("I couldn't open a return for order {id}."),
            }
        }
    };
    (text, false)
}

/// Product recommendations.
#[must_use]
pub fn recommendations(
    products: &[Product],
    hits: &[Recommendation],
    sold_out: &[usize],
    query: &ProductQuery,
) -> String {
    let mut out = if hits.is_empty() {
        "I couldn't find an in-stock product matching that. Could you tell me the kind of item, a \
         colour or a budget?"
            .to_owned()
    } else {
        let lines: Vec<String> = hits
            .iter()
            .map(|h| product_line(&products[h.product]))
            .collect();
        let what = query.category.as_deref().unwrap_or("products");
        format!("Here are {what} options in stock:\n{}", lines.join("\n"))
    };
    if !sold_out.is_empty() {
        let names: Vec<&str> = sold_out
            .iter()
            .take(3)
            .map(|&i| products[i].name.as_str())
            .collect();
        out.push_str(&format!(
            "\n(Out of stock right now: {}; you can sign up for a back-in-stock alert.)",
            names.join(", ")
        ));
    }
    out
}

/// Photo-search results.
#[must_use]
pub fn photo(category: &str, products: &[Product], ranked: &[(usize, f32)]) -> String {
    if ranked.is_empty() {
        return format!("That looks like a {category}, but none is in stock right now.");
    }
    let lines: Vec<String> = ranked
        .iter()
        .map(|(i, _)| product_line(&products[*i]))
        .collect();
    format!(
        "That looks like a {category}. Similar items in stock:\n{}",
        lines.join("\n")
    )
}

fn product_line(p: &Product) -> String {
    let colors = if p.colors.is_empty() {
        String::new()
    } else {
        format!(", {}", p.colors.join("/"))
    };
    format!(
        "- {} ({}), ${:.2}{colors}: {}",
        p.name, p.sku, p.price, p.description
    )
}
