//! The store's data files: the catalogue, customers, orders (JSON Lines) and the knowledge base
//! (one Markdown file per article with a small front matter), as shipped in `crates/kiln-retail/data`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Result, RetailError};

/// Where a product or query image comes from: an index into a Fashion-MNIST split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// `"train"` or `"test"`.
    pub split: Split,
    /// The image's index in that split.
    pub index: usize,
}

/// A Fashion-MNIST split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Stock-keeping unit, e.g. `SN-003`.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// One of [`CATEGORIES`].
    pub category: String,
    /// One or two sentences.
    pub description: String,
    /// Price in dollars.
    pub price: f64,
    /// Units in stock.
    pub stock: u32,
    /// Colour words.
    #[serde(default)]
    pub colors: Vec<String>,
    /// Search tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The product photo.
    pub image: ImageRef,
}

/// The store's ten categories (Fashion-MNIST's labels, in label order).
pub const CATEGORIES: [&str; 10] = [
    "t-shirt",
    "trousers",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// A customer account; its id is the name of the customer's API key in the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// E.g. `C1001`.
    pub id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Phone number.
    pub phone: String,
    /// City.
    #[serde(default)]
    pub city: String,
    /// Loyalty tier.
    #[serde(default)]
    pub tier: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The product.
    pub sku: String,
    /// Quantity.
    pub qty: u32,
    /// Unit price paid.
    pub price: f64,
}

/// A tracking event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentEvent {
    /// ISO date-time.
    pub date: String,
    /// Where.
    pub location: String,
    /// What happened.
    pub status: String,
}

/// How an order ships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipping {
    /// Carrier name.
    pub carrier: String,
    /// Tracking number.
    pub tracking: String,
    /// Delivery address.
    pub address: String,
    /// Tracking events, oldest first.
    #[serde(default)]
    pub events: Vec<ShipmentEvent>,
    /// Delivery date (ISO), when delivered.
    #[serde(default)]
    pub delivered: Option<String>,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// E.g. `KO-482913`.
    pub id: String,
    /// The customer id.
    pub customer: String,
    /// ISO date the order was placed.
    pub placed: String,
    /// `processing`, `shipped`, `delivered`, `cancelled`, `returned` (or `return requested`).
    pub status: String,
    /// The lines.
    pub items: Vec<OrderItem>,
    /// Shipping details.
    pub shipping: Shipping,
}

/// A knowledge-base article.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Article {
    /// E.g. `KB-012`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Tags from the front matter.
    pub tags: Vec<String>,
    /// Paragraphs of the body.
    pub paragraphs: Vec<String>,
}

/// Everything the store ships with.
#[derive(Debug, Clone, Default)]
pub struct StoreData {
    /// The catalogue.
    pub products: Vec<Product>,
    /// Customer accounts.
    pub customers: Vec<Customer>,
    /// Orders.
    pub orders: Vec<Order>,
    /// The knowledge base.
    pub articles: Vec<Article>,
}

impl StoreData {
    /// Reads `products.jsonl`, `customers.jsonl`, `orders.jsonl` and `kb/*.md` under `dir`, and
    /// checks that they agree (categories exist, order lines name catalogue products, orders name
    /// customers, ids are unique).
    ///
    /// # Errors
    /// A missing or malformed file, named with its line.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let data = Self {
            products: read_jsonl(&dir.join("products.jsonl"))?,
            customers: read_jsonl(&dir.join("customers.jsonl"))?,
            orders: read_jsonl(&dir.join("orders.jsonl"))?,
            articles: read_articles(&dir.join("kb"))?,
        };
        data.validate(dir)?;
        Ok(data)
    }

    fn validate(&self, dir: &Path) -> Result<()> {
        let bad = |file: &str, message: String| RetailError::Data {
            path: dir.join(file),
            line: 0,
            message,
        };
        let mut skus = std::collections::HashSet::new();
        for p in &self.products {
            if !CATEGORIES.contains(&p.category.as_str()) {
                return Err(bad(
                    "products.jsonl",
                    format!("{}: unknown category {:?}", p.sku, p.category),
                ));
            }
            if !skus.insert(p.sku.as_str()) {
                return Err(bad("products.jsonl", format!("duplicate sku {}", p.sku)));
            }
        }
        let customers: std::collections::HashSet<_> =
            self.customers.iter().map(|c| c.id.as_str()).collect();
        let mut ids = std::collections::HashSet::new();
        for o in &self.orders {
            if !ids.insert(o.id.as_str()) {
                return Err(bad("orders.jsonl", format!("duplicate order {}", o.id)));
            }
            if !customers.contains(o.customer.as_str()) {
                return Err(bad(
                    "orders.jsonl",
                    format!("{}: unknown customer {}", o.id, o.customer),
                ));
            }
            if let Some(i) = o.items.iter().find(|i| !skus.contains(i.sku.as_str())) {
                return Err(bad(
                    "orders.jsonl",
                    format!("{}: unknown sku {}", o.id, i.sku),
                ));
            }
        }
        if self.articles.is_empty() {
            return Err(bad("kb", "no articles".into()));
        }
        Ok(())
    }
}

/// Reads a JSON Lines file (blank lines skipped).
///
/// # Errors
/// An unreadable file or a line that does not parse, with its number.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|source| RetailError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| RetailError::Data {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?);
    }
    Ok(out)
}

fn read_articles(dir: &Path) -> Result<Vec<Article>> {
    let entries = std::fs::read_dir(dir).map_err(|source| RetailError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|source| RetailError::Io {
                path: p.clone(),
                source,
            })?;
            parse_article(&text).map_err(|message| RetailError::Data {
                path: p.clone(),
                line: 0,
                message,
            })
        })
        .collect()
}

/// Parses an article: `---`, `id:`, `title:`, `tags:` lines, `---`, then paragraphs separated by
/// blank lines.
///
/// # Errors
/// A missing front matter or a missing `id` or `title`.
pub fn parse_article(text: &str) -> std::result::Result<Article, String> {
    let text = text.trim_start_matches('\u{feff}');
    let rest = text
        .strip_prefix("---")
        .ok_or("the article does not start with a `---` front matter")?;
    let end = rest
        .find("\n---")
        .ok_or("the front matter is not closed by `---`")?;
    let (front, body) = (&rest[..end], &rest[end + 4..]);
    let (mut id, mut title, mut tags) = (None, None, Vec::new());
    for line in front.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "id" => id = Some(value.to_owned()),
            "title" => title = Some(value.to_owned()),
            "tags" => {
                tags = value
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect();
            }
            _ => {}
        }
    }
    let paragraphs = body
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
        .collect();
    Ok(Article {
        id: id.ok_or("front matter without `id`")?,
        title: title.ok_or("front matter without `title`")?,
        tags,
        paragraphs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_front_matter_and_paragraphs() {
        let a = parse_article(
            "---\nid: KB-001\ntitle: Returns\ntags: returns, refunds\n---\n\n# Returns\n\nYou have 30\ndays.\n\nRefunds take 5 days.\n",
        )
        .unwrap();
        assert_eq!(a.id, "KB-001");
        assert_eq!(a.tags, ["returns", "refunds"]);
        assert_eq!(a.paragraphs, ["You have 30 days.", "Refunds take 5 days."]);
        assert!(parse_article("id: x").unwrap_err().contains("front matter"));
        assert!(
            parse_article("---\ntitle: t\n---\nx")
                .unwrap_err()
                .contains("id")
        );
    }
}
