//! The store's systems of record in SQLite: catalogue, customers, orders with their shipments,
//! returns, feedback and the (PII-masked) conversation log.
//!
//! Every order query takes the signed-in customer and filters on it in SQL, so an order that
//! belongs to someone else is indistinguishable from one that does not exist.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::data::{ImageRef, Order, OrderItem, Product, ShipmentEvent, Shipping, Split, StoreData};
use crate::{Result, RetailError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (sku TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
  description TEXT NOT NULL, price REAL NOT NULL, stock INTEGER NOT NULL, colors TEXT NOT NULL,
  tags TEXT NOT NULL, image_split TEXT NOT NULL, image_index INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
  phone TEXT NOT NULL, city TEXT NOT NULL, tier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
  placed TEXT NOT NULL, status TEXT NOT NULL, carrier TEXT NOT NULL, tracking TEXT NOT NULL,
  address TEXT NOT NULL, delivered TEXT);
CREATE INDEX IF NOT EXISTS orders_customer ON orders(customer_id);
CREATE TABLE IF NOT EXISTS order_items (order_id TEXT NOT NULL REFERENCES orders(id), sku TEXT NOT NULL,
  qty INTEGER NOT NULL, price REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shipment_events (order_id TEXT NOT NULL REFERENCES orders(id), seq INTEGER NOT NULL,
  date TEXT NOT NULL, location TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS returns (rma TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE,
  customer_id TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
  customer_id TEXT NOT NULL, completion_id TEXT NOT NULL, rating TEXT NOT NULL, comment TEXT);
CREATE TABLE IF NOT EXISTS turns (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL,
  customer_id TEXT NOT NULL, intent TEXT NOT NULL, message TEXT NOT NULL, reply TEXT NOT NULL,
  tools TEXT NOT NULL, latency_ms REAL NOT NULL);
";

/// The outcome of [`Store::start_return`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ReturnOutcome {
    /// A return was opened.
    Started {
        /// The return authorisation number.
        rma: String,
        /// The last day the parcel may be sent.
        ship_by: String,
    },
    /// A return for this order already exists.
    AlreadyStarted {
        /// Its number.
        rma: String,
    },
    /// The order has not been delivered (it can be cancelled or refused instead).
    NotDelivered {
        /// Its status.
        status: String,
    },
    /// Delivered longer ago than the return window.
    OutsideWindow {
        /// Delivery date.
        delivered: String,
        /// The window in days.
        window_days: i64,
    },
    /// No such order on the customer's account.
    NotFound,
}

/// One logged assistant turn (text already PII-masked by the caller).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnLog {
    /// The signed-in customer (or `anonymous`).
    pub customer: String,
    /// The routed intent.
    pub intent: String,
    /// The user's message, masked.
    pub message: String,
    /// The reply, masked.
    pub reply: String,
    /// The tool calls, as JSON.
    pub tools: String,
    /// Wall time of the turn.
    pub latency_ms: f64,
}

/// The store database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens the database at `path` (created when absent; `None`: in memory) and seeds it with
    /// `data` when it holds no catalogue yet. Returns, feedback and the turn log persist in a file
    /// database across restarts.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn open(path: Option<&Path>, data: &StoreData) -> Result<Self> {
        let conn = match path {
            Some(p) => Connection::open(p)?,
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        conn.execute_batch(SCHEMA)?;
        let store = Self {
            conn: Mutex::new(conn),
        };
        let empty: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?;
        if empty == 0 {
            store.seed(data)?;
        }
        Ok(store)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are atomic).
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn seed(&self, data: &StoreData) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for p in &data.products {
            tx.execute(
                "INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    p.sku,
                    p.name,
                    p.category,
                    p.description,
                    p.price,
                    p.stock,
                    serde_json::to_string(&p.colors).unwrap_or_default(),
                    serde_json::to_string(&p.tags).unwrap_or_default(),
                    split_name(p.image.split),
                    p.image.index as i64,
                ],
            )?;
        }
        for c in &data.customers {
            tx.execute(
                "INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.id, c.name, c.email, c.phone, c.city, c.tier],
            )?;
        }
        for o in &data.orders {
            tx.execute(
                "INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    o.id,
                    o.customer,
                    o.placed,
                    o.status,
                    o.shipping.carrier,
                    o.shipping.tracking,
                    o.shipping.address,
                    o.shipping.delivered,
                ],
            )?;
            for i in &o.items {
                tx.execute(
                    "INSERT INTO order_items VALUES (?1, ?2, ?3, ?4)",
                    params![o.id, i.sku, i.qty, i.price],
                )?;
            }
            for (seq, e) in o.shipping.events.iter().enumerate() {
                tx.execute(
                    "INSERT INTO shipment_events VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![o.id, seq as i64, e.date, e.location, e.status],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The whole catalogue, by sku.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn products(&self) -> Result<Vec<Product>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT sku, name, category, description, price, stock, colors, tags, image_split, image_index
             FROM products ORDER BY sku",
        )?;
        let rows = stmt.query_map([], |r| {
            let colors: String = r.get(6)?;
            let tags: String = r.get(7)?;
            let split: String = r.get(8)?;
            let index: i64 = r.get(9)?;
            Ok(Product {
                sku: r.get(0)?,
                name: r.get(1)?,
                category: r.get(2)?,
                description: r.get(3)?,
                price: r.get(4)?,
                stock: r.get(5)?,
                colors: serde_json::from_str(&colors).unwrap_or_default(),
                tags: serde_json::from_str(&tags).unwrap_or_default(),
                image: ImageRef {
                    split: if split == "test" {
                        Split::Test
                    } else {
                        Split::Train
                    },
                    index: usize::try_from(index).unwrap_or(0),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The customer's display name, if the account exists.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn customer_name(&self, customer: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name FROM customers WHERE id = ?1",
                [customer],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The order `order_id` if it belongs to `customer`; `None` otherwise (also when it exists
    /// for someone else).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn order(&self, customer: &str, order_id: &str) -> Result<Option<Order>> {
        let conn = self.conn();
        let head = conn
            .query_row(
                "SELECT id, customer_id, placed, status, carrier, tracking, address, delivered
                 FROM orders WHERE id = ?1 AND customer_id = ?2",
                params![order_id, customer],
                |r| {
                    Ok(Order {
                        id: r.get(0)?,
                        customer: r.get(1)?,
                        placed: r.get(2)?,
                        status: r.get(3)?,
                        items: Vec::new(),
                        shipping: Shipping {
                            carrier: r.get(4)?,
                            tracking: r.get(5)?,
                            address: r.get(6)?,
                            events: Vec::new(),
                            delivered: r.get(7)?,
                        },
                    })
                },
            )
            .optional()?;
        let Some(mut order) = head else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare("SELECT sku, qty, price FROM order_items WHERE order_id = ?1")?;
        order.items = stmt
            .query_map([order_id], |r| {
                Ok(OrderItem {
                    sku: r.get(0)?,
                    qty: r.get(1)?,
                    price: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut stmt = conn.prepare(
            "SELECT date, location, status FROM shipment_events WHERE order_id = ?1 ORDER BY seq",
        )?;
        order.shipping.events = stmt
            .query_map([order_id], |r| {
                Ok(ShipmentEvent {
                    date: r.get(0)?,
                    location: r.get(1)?,
                    status: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(order))
    }

    /// The customer's orders, newest first: (id, placed, status).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn orders_of(&self, customer: &str) -> Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, placed, status FROM orders WHERE customer_id = ?1 ORDER BY placed DESC, id",
        )?;
        let rows = stmt.query_map([customer], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Opens a return for a delivered order of `customer` when `today` is within `window_days`
    /// of delivery (the knowledge base's return policy).
    ///
    /// # Errors
    /// SQLite failures, or a delivery date that does not parse.
    pub fn start_return(
        &self,
        customer: &str,
        order_id: &str,
        today: NaiveDate,
        window_days: i64,
    ) -> Result<ReturnOutcome> {
        let Some(order) = self.order(customer, order_id)? else {
            return Ok(ReturnOutcome::NotFound);
        };
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row(
                "SELECT rma FROM returns WHERE order_id = ?1",
                [order_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(rma) = existing {
            return Ok(ReturnOutcome::AlreadyStarted { rma });
        }
        let delivered = match (order.status.as_str(), &order.shipping.delivered) {
            ("delivered", Some(d)) => d.clone(),
            _ => {
                return Ok(ReturnOutcome::NotDelivered {
                    status: order.status,
                });
            }
        };
        let date = parse_date(&delivered).ok_or_else(|| RetailError::Data {
            path: "orders".into(),
            line: 0,
            message: format!("{order_id}: delivery date {delivered:?} is not YYYY-MM-DD"),
        })?;
        let last = date + chrono::Duration::days(window_days);
        if today > last {
            return Ok(ReturnOutcome::OutsideWindow {
                delivered,
                window_days,
            });
        }
        let rma = format!("RMA-{}", order_id.trim_start_matches("KO-"));
        conn.execute(
            "INSERT INTO returns VALUES (?1, ?2, ?3, ?4)",
            params![rma, order_id, customer, today.to_string()],
        )?;
        conn.execute(
            "UPDATE orders SET status = 'return requested' WHERE id = ?1",
            [order_id],
        )?;
        Ok(ReturnOutcome::Started {
            rma,
            ship_by: (today + chrono::Duration::days(14)).to_string(),
        })
    }

    /// Puts every order back as `data` has it and deletes the returns (the evaluation starts each
    /// case from the same state); the turn log and feedback are kept.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn reset_orders(&self, data: &StoreData) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM returns", [])?;
        for o in &data.orders {
            tx.execute(
                "UPDATE orders SET status = ?1 WHERE id = ?2",
                params![o.status, o.id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a rating of a reply.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn record_feedback(
        &self,
        customer: &str,
        completion_id: &str,
        rating: &str,
        comment: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO feedback (created, customer_id, completion_id, rating, comment)
             VALUES (datetime('now'), ?1, ?2, ?3, ?4)",
            params![customer, completion_id, rating, comment],
        )?;
        Ok(())
    }

    /// Feedback counts: (up, down).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn feedback_counts(&self) -> Result<(u64, u64)> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(SUM(rating = 'up'), 0), COALESCE(SUM(rating = 'down'), 0) FROM feedback",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Appends a turn to the conversation log.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn record_turn(&self, turn: &TurnLog) -> Result<()> {
        self.conn().execute(
            "INSERT INTO turns (created, customer_id, intent, message, reply, tools, latency_ms)
             VALUES (datetime('now'), ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                turn.customer,
                turn.intent,
                turn.message,
                turn.reply,
                turn.tools,
                turn.latency_ms
            ],
        )?;
        Ok(())
    }

    /// The id of the last logged turn (0 when none).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn last_turn_id(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM turns", [], |r| r.get(0))?)
    }

    /// Every logged text (turn messages, replies and tool calls after turn `after`, and feedback
    /// comments), for audits such as the evaluation's scan for leaked data.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn logged_text(&self, after: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut out = Vec::new();
        let mut stmt = conn.prepare("SELECT message, reply, tools FROM turns WHERE id > ?1")?;
        for row in stmt.query_map([after], |r| {
            Ok([r.get::<_, String>(0)?, r.get(1)?, r.get(2)?])
        })? {
            out.extend(row?);
        }
        let mut stmt = conn.prepare("SELECT COALESCE(comment, '') FROM feedback")?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            out.push(row?);
        }
        Ok(out)
    }
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "test",
    }
}

/// Parses the date part of an ISO date or date-time.
#[must_use]
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}
