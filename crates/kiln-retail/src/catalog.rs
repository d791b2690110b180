//! Product recommendation: filters read from the customer's words (category, colour, price
//! bounds), BM25 over the rest, in-stock items first; and photo search, where CLIP embeddings of
//! the customer's photo are compared with the category captions and the product photos.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::data::{CATEGORIES, Product};
use crate::search::{Bm25, terms};

/// Words customers use for each category (matched as whole words, longest first).
const SYNONYMS: &[(&str, &str)] = &[
    ("ankle boots", "ankle boot"),
    ("ankle boot", "ankle boot"),
    ("boots", "ankle boot"),
    ("boot", "ankle boot"),
    ("t-shirts", "t-shirt"),
    ("t-shirt", "t-shirt"),
    ("tshirt", "t-shirt"),
    ("tee", "t-shirt"),
    ("tees", "t-shirt"),
    ("top", "t-shirt"),
    ("trousers", "trousers"),
    ("pants", "trousers"),
    ("jeans", "trousers"),
    ("chinos", "trousers"),
    ("joggers", "trousers"),
    ("pullovers", "pullover"),
    ("pullover", "pullover"),
    ("sweater", "pullover"),
    ("sweaters", "pullover"),
    ("jumper", "pullover"),
    ("hoodie", "pullover"),
    ("sweatshirt", "pullover"),
    ("cardigan", "pullover"),
    ("dresses", "dress"),
    ("dress", "dress"),
    ("gown", "dress"),
    ("coats", "coat"),
    ("coat", "coat"),
    ("jacket", "coat"),
    ("jackets", "coat"),
    ("parka", "coat"),
    ("raincoat", "coat"),
    ("sandals", "sandal"),
    ("sandal", "sandal"),
    ("flip flops", "sandal"),
    ("shirts", "shirt"),
    ("shirt", "shirt"),
    ("blouse", "shirt"),
    ("button-down", "shirt"),
    ("sneakers", "sneaker"),
    ("sneaker", "sneaker"),
    ("trainers", "sneaker"),
    ("running shoes", "sneaker"),
    ("bags", "bag"),
    ("bag", "bag"),
    ("backpack", "bag"),
    ("tote", "bag"),
    ("handbag", "bag"),
    ("purse", "bag"),
];

/// Colour words and their canonical form.
const COLORS: &[(&str, &str)] = &[
    ("black", "black"),
    ("white", "white"),
    ("grey", "grey"),
    ("gray", "grey"),
    ("navy", "navy"),
    ("blue", "blue"),
    ("red", "red"),
    ("green", "green"),
    ("beige", "beige"),
    ("brown", "brown"),
    ("pink", "pink"),
    ("yellow", "yellow"),
    ("olive", "olive"),
];

static MAX_PRICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:under|below|less than|cheaper than|at most|max(?:imum)?|up to|no more than|<)\s*(?:\$|usd\s*)?\s*(\d+(?:\.\d+)?)")
        .expect("valid regex")
});
static MIN_PRICE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:over|above|more than|at least|>)\s*(?:\$|usd\s*)?\s*(\d+(?:\.\d+)?)")
        .expect("valid regex")
});

/// What a customer asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProductQuery {
    /// The category named, if any.
    pub category: Option<String>,
    /// A colour named, if any.
    pub color: Option<String>,
    /// Upper price bound.
    pub max_price: Option<f64>,
    /// Lower price bound.
    pub min_price: Option<f64>,
    /// The remaining content words, stemmed.
    pub terms: Vec<String>,
}

impl ProductQuery {
    /// Reads the filters out of a message.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let lower = format!(" {} ", text.to_lowercase());
        let is_word = |w: &str| {
            lower.match_indices(w).any(|(i, _)| {
                let before = lower[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric());
                let after = lower[i + w.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric());
                before && after
            })
        };
        let category = SYNONYMS
            .iter()
            .find(|(w, _)| is_word(w))
            .map(|(_, c)| (*c).to_owned());
        let color = COLORS
            .iter()
            .find(|(w, _)| is_word(w))
            .map(|(_, c)| (*c).to_owned());
        let price = |re: &Regex| {
            re.captures(text)
                .and_then(|c| c.get(1))
                .and_then(|m| m.as_str().parse().ok())
        };
        Self {
            category,
            color,
            max_price: price(&MAX_PRICE),
            min_price: price(&MIN_PRICE),
            terms: terms(text),
        }
    }

    /// Whether the customer gave anything to search by.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.category.is_none()
            && self.color.is_none()
            && self.max_price.is_none()
            && self.min_price.is_none()
            && self.terms.is_empty()
    }
}

/// A recommended product with why it ranked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// Index into the catalogue.
    pub product: usize,
    /// Its ranking score.
    pub score: f64,
}

/// The catalogue with its text index.
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Vec<Product>,
    index: Bm25,
}

impl Catalog {
    /// Indexes the products' names, descriptions, tags, colours and categories.
    #[must_use]
    pub fn new(products: Vec<Product>) -> Self {
        let docs: Vec<Vec<String>> = products
            .iter()
            .map(|p| {
                terms(&format!(
                    "{} {} {} {} {}",
                    p.name,
                    p.description,
                    p.tags.join(" "),
                    p.colors.join(" "),
                    p.category
                ))
            })
            .collect();
        Self {
            index: Bm25::new(&docs),
            products,
        }
    }

    /// The products.
    #[must_use]
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// Up to `k` in-stock products that satisfy every filter of `query`, best text match first
    /// (then cheapest).
    #[must_use]
    pub fn recommend(&self, query: &ProductQuery, k: usize) -> Vec<Recommendation> {
        let scores = self.index.scores(&query.terms);
        let mut hits: Vec<Recommendation> = self
            .products
            .iter()
            .enumerate()
            .filter(|(_, p)| p.stock > 0 && matches(p, query))
            .map(|(i, _)| Recommendation {
                product: i,
                score: scores[i],
            })
            .collect();
        if query.category.is_none() && query.color.is_none() {
            // Free text only: it must match something.
            hits.retain(|h| h.score > 0.0);
        }
        hits.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then(
                self.products[a.product]
                    .price
                    .total_cmp(&self.products[b.product].price),
            )
        });
        hits.truncate(k);
        hits
    }

    /// Products that match `query` but are out of stock (to say so rather than stay silent).
    #[must_use]
    pub fn out_of_stock(&self, query: &ProductQuery) -> Vec<usize> {
        self.products
            .iter()
            .enumerate()
            .filter(|(_, p)| p.stock == 0 && query.category.is_some() && matches(p, query))
            .map(|(i, _)| i)
            .collect()
    }
}

fn matches(p: &Product, q: &ProductQuery) -> bool {
    q.category.as_ref().is_none_or(|c| &p.category == c)
        && q.color
            .as_ref()
            .is_none_or(|c| p.colors.iter().any(|pc| pc == c))
        && q.max_price.is_none_or(|m| p.price <= m)
        && q.min_price.is_none_or(|m| p.price >= m)
}

/// The caption used for each category in photo search (the Fashion-MNIST CLIP's training form).
#[must_use]
pub fn category_captions() -> Vec<String> {
    CATEGORIES
        .iter()
        .map(|c| format!("a photo of a {c}."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageRef, Split};

    fn product(sku: &str, category: &str, price: f64, stock: u32, colors: &[&str]) -> Product {
        Product {
            sku: sku.into(),
            name: format!("{sku} item"),
            category: category.into(),
            description: "waterproof leather".into(),
            price,
            stock,
            colors: colors.iter().map(|c| (*c).to_owned()).collect(),
            tags: vec![],
            image: ImageRef {
                split: Split::Train,
                index: 0,
            },
        }
    }

    #[test]
    fn parses_filters() {
        let q = ProductQuery::parse("I need waterproof boots under $120 in black");
        assert_eq!(q.category.as_deref(), Some("ankle boot"));
        assert_eq!(q.color.as_deref(), Some("black"));
        assert_eq!(q.max_price, Some(120.0));
        let q = ProductQuery::parse("a summer dress over 40 dollars");
        assert_eq!(
            (q.category.as_deref(), q.min_price),
            (Some("dress"), Some(40.0))
        );
        // "top" is a word, not part of "stop" or "laptop".
        assert_eq!(
            ProductQuery::parse("a laptop bag").category.as_deref(),
            Some("bag")
        );
    }

    #[test]
    fn recommends_in_stock_matches_only() {
        let c = Catalog::new(vec![
            product("AB-1", "ankle boot", 99.0, 3, &["black"]),
            product("AB-2", "ankle boot", 150.0, 3, &["black"]),
            product("AB-3", "ankle boot", 80.0, 0, &["black"]),
            product("SN-1", "sneaker", 60.0, 3, &["white"]),
        ]);
        let q = ProductQuery::parse("black boots under $120");
        let hits: Vec<_> = c.recommend(&q, 3).iter().map(|h| h.product).collect();
        assert_eq!(hits, [0]);
        assert_eq!(c.out_of_stock(&q), [2]);
    }
}
