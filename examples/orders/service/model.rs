//! What the service stores and answers: rows as JSON, values as cache
//! entries (serde, so that they also go to Redis under `CACHE_BACKEND=hybrid`).

use std::fmt;
use std::sync::Arc;

use cache_runtime::KeyPart;
use serde::{Deserialize, Serialize};

/// The tenant a request acts for, from its `x-tenant` header. Every key
/// carries it and every query filters on it.
#[derive(Clone, Debug, PartialEq, Eq, KeyPart)]
pub struct Tenant(String);

impl Tenant {
    /// `a-z`, `0-9` and `-`, 1 to 32 bytes, starting with a letter or digit:
    /// nothing a key or a pattern could read as a separator or a wildcard.
    pub fn parse(s: &str) -> Result<Tenant, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Tenant(s.to_string()))
        } else {
            Err(format!(
                "tenant {s:?}: write 1 to 32 of a-z, 0-9 and '-', not starting with '-'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The lookup tables: the same for every tenant, read on most pages.
pub const LOOKUPS: [&str; 6] = [
    "order_states",
    "categories",
    "brands",
    "carriers",
    "countries",
    "langs",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lookup {
    pub id: i64,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub country_id: i64,
    pub created_at: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CustomerInput {
    pub name: String,
    pub email: String,
    pub country_id: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub category_id: i64,
    pub brand_id: i64,
    pub price_cents: i64,
    pub stock: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProductInput {
    pub name: String,
    pub category_id: i64,
    pub brand_id: i64,
    pub price_cents: i64,
    pub stock: i64,
}

/// A product with what its page shows around it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductPage {
    pub product: Product,
    pub category: String,
    pub brand: String,
    pub related: Vec<Product>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: i64,
    pub customer_id: i64,
    pub state_id: i64,
    pub carrier_id: i64,
    pub total_cents: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct OrderInput {
    pub customer_id: i64,
    pub carrier_id: i64,
    pub total_cents: i64,
}

/// A line of the orders list: the order with its customer's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub id: i64,
    pub customer: String,
    pub state_id: i64,
    pub total_cents: i64,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub state_id: i64,
    pub at: i64,
}

/// A failed read or write, shared by the callers a single flight answers
/// (`Clone`), and never cached: a request the data refuses (`invalid`,
/// answered 422) or the database failing (500).
#[derive(Clone, Debug)]
pub struct DbError {
    message: Arc<str>,
    invalid: bool,
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> DbError {
        DbError {
            message: format!("database: {e}").into(),
            invalid: false,
        }
    }
}

impl DbError {
    /// What the request asked for cannot be done with this data.
    pub fn invalid(message: impl Into<Arc<str>>) -> DbError {
        DbError {
            message: message.into(),
            invalid: true,
        }
    }

    pub fn is_invalid(&self) -> bool {
        self.invalid
    }
}
