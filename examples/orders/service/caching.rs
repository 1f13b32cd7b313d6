//! Every cached read and every invalidating write of the service, side by
//! side: one attribute per function. Keys carry the tenant; a write
//! invalidates after its transaction committed (`#[invalidates]` applies on
//! `Ok` only, after the body returned).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cache_runtime::{cached, invalidates, Cache, WarmOptions, WarmReport};

use super::db::{Db, RELATED};
use super::model::{
    Customer, CustomerInput, DbError, Lookup, Order, OrderInput, OrderLine, Product, ProductInput,
    ProductPage, StateChange, Tenant, LOOKUPS,
};

/// How long a lookup lives: they change with a deployment, not a request.
pub const LOOKUP_TTL: Duration = Duration::from_secs(24 * 3600);

// ---- reads ------------------------------------------------------------

/// A lookup table (`order_states`, `categories`, ...), warmed at start-up
/// and every few minutes by [`add_lookup_warmer`].
#[cached(ttl = "24h", key = "lookup:<kind>", skip(db))]
pub async fn lookup(db: &Db, kind: &str) -> Result<Vec<Lookup>, DbError> {
    db.lookup(kind).await
}

#[cached(ttl = "2m", key = "order:<tenant>:<id>", skip(db))]
pub async fn order(db: &Db, tenant: &Tenant, id: i64) -> Result<Option<Order>, DbError> {
    db.order(tenant, id).await
}

#[cached(ttl = "2m", key = "order-history:<tenant>:<id>", skip(db))]
pub async fn order_history(db: &Db, tenant: &Tenant, id: i64) -> Result<Vec<StateChange>, DbError> {
    db.history(tenant, id).await
}

/// A page of the orders list: 30 s fresh, then served for 2 minutes more
/// while one caller refreshes it.
#[cached(
    ttl = "30s",
    stale = "2m",
    key = "orders:list:<tenant>:p<page>",
    skip(db)
)]
pub async fn orders(db: &Db, tenant: &Tenant, page: u32) -> Result<Vec<OrderLine>, DbError> {
    db.orders(tenant, page).await
}

#[cached(ttl = "1h", key = "customer:<tenant>:<id>", skip(db))]
pub async fn customer(db: &Db, tenant: &Tenant, id: i64) -> Result<Option<Customer>, DbError> {
    db.customer(tenant, id).await
}

#[cached(
    ttl = "30s",
    stale = "2m",
    key = "customers:list:<tenant>:p<page>",
    skip(db)
)]
pub async fn customers(db: &Db, tenant: &Tenant, page: u32) -> Result<Vec<Customer>, DbError> {
    db.customers(tenant, page).await
}

/// Products by id, in one query for the ids no tier holds. Each id is its
/// own entry (`product:<tenant>:<id>`), shared with [`product`].
#[cached(ttl = "6h", key = "product:<tenant>:<ids>", batch = "ids", skip(db))]
pub async fn products(
    db: &Db,
    tenant: &Tenant,
    ids: &[i64],
) -> Result<HashMap<i64, Product>, DbError> {
    let found = db.products(tenant, ids).await?;
    Ok(found.into_iter().map(|p| (p.id, p)).collect())
}

#[cached(ttl = "6h", key = "product:<tenant>:<id>", skip(db))]
pub async fn product(db: &Db, tenant: &Tenant, id: i64) -> Result<Option<Product>, DbError> {
    Ok(products(db, tenant, &[id]).await?.remove(&id))
}

#[cached(ttl = "1m", key = "products:list:<tenant>:p<page>", skip(db))]
pub async fn product_list(db: &Db, tenant: &Tenant, page: u32) -> Result<Vec<Product>, DbError> {
    db.product_list(tenant, page).await
}

/// The first products of a category: under `products:list:` so that a
/// product write's `products:list:<tenant>:*` reaches it.
#[cached(ttl = "1m", key = "products:list:<tenant>:c<category>", skip(db))]
pub async fn category_ids(db: &Db, tenant: &Tenant, category: i64) -> Result<Vec<i64>, DbError> {
    db.category_ids(tenant, category).await
}

/// A product page: the product, its category and brand by name, and
/// related products through the batch loader. Not cached itself: it is
/// made of cached parts, each invalidated on its own.
pub async fn product_page(
    db: &Db,
    tenant: &Tenant,
    id: i64,
) -> Result<Option<ProductPage>, DbError> {
    let Some(product) = product(db, tenant, id).await? else {
        return Ok(None);
    };
    let name_of = |table: &[Lookup], id: i64| {
        table
            .iter()
            .find(|l| l.id == id)
            .map_or_else(|| format!("#{id}"), |l| l.name.clone())
    };
    let category = name_of(&lookup(db, "categories").await?, product.category_id);
    let brand = name_of(&lookup(db, "brands").await?, product.brand_id);
    let ids: Vec<i64> = category_ids(db, tenant, product.category_id)
        .await?
        .into_iter()
        .filter(|&other| other != id)
        .take(RELATED as usize)
        .collect();
    let mut found = products(db, tenant, &ids).await?;
    let related = ids.iter().filter_map(|id| found.remove(id)).collect();
    Ok(Some(ProductPage {
        product,
        category,
        brand,
        related,
    }))
}

// ---- writes -----------------------------------------------------------

#[invalidates("orders:list:<tenant>:*")]
pub async fn create_order(db: &Db, tenant: &Tenant, input: &OrderInput) -> Result<Order, DbError> {
    db.create_order(tenant, input).await
}

#[invalidates("order:<tenant>:<id>", "orders:list:<tenant>:*")]
pub async fn update_order(
    db: &Db,
    tenant: &Tenant,
    id: i64,
    input: &OrderInput,
) -> Result<Option<Order>, DbError> {
    db.update_order(tenant, id, input).await
}

/// A status change: the order, its history and the lists that show it.
#[invalidates(
    "order:<tenant>:<id>",
    "order-history:<tenant>:<id>",
    "orders:list:<tenant>:*"
)]
pub async fn set_order_state(
    db: &Db,
    tenant: &Tenant,
    id: i64,
    state: i64,
) -> Result<Option<Order>, DbError> {
    db.set_order_state(tenant, id, state).await
}

#[invalidates(
    "order:<tenant>:<id>",
    "order-history:<tenant>:<id>",
    "orders:list:<tenant>:*"
)]
pub async fn delete_order(db: &Db, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
    db.delete_order(tenant, id).await
}

#[invalidates("customers:list:<tenant>:*")]
pub async fn create_customer(
    db: &Db,
    tenant: &Tenant,
    input: &CustomerInput,
) -> Result<Customer, DbError> {
    db.create_customer(tenant, input).await
}

/// The orders list shows customers' names: it goes too.
#[invalidates(
    "customer:<tenant>:<id>",
    "customers:list:<tenant>:*",
    "orders:list:<tenant>:*"
)]
pub async fn update_customer(
    db: &Db,
    tenant: &Tenant,
    id: i64,
    input: &CustomerInput,
) -> Result<Option<Customer>, DbError> {
    db.update_customer(tenant, id, input).await
}

#[invalidates("customer:<tenant>:<id>", "customers:list:<tenant>:*")]
pub async fn delete_customer(db: &Db, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
    db.delete_customer(tenant, id).await
}

#[invalidates("products:list:<tenant>:*")]
pub async fn create_product(
    db: &Db,
    tenant: &Tenant,
    input: &ProductInput,
) -> Result<Product, DbError> {
    db.create_product(tenant, input).await
}

#[invalidates("product:<tenant>:<id>", "products:list:<tenant>:*")]
pub async fn update_product(
    db: &Db,
    tenant: &Tenant,
    id: i64,
    input: &ProductInput,
) -> Result<Option<Product>, DbError> {
    db.update_product(tenant, id, input).await
}

#[invalidates("product:<tenant>:<id>", "products:list:<tenant>:*")]
pub async fn delete_product(db: &Db, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
    db.delete_product(tenant, id).await
}

// ---- warming ----------------------------------------------------------

/// Stores the lookups no tier holds yet, one query each, under the keys
/// [`lookup`] reads.
pub async fn warm_lookups(cache: &Cache, db: Arc<Db>) -> WarmReport {
    let options = WarmOptions::default().batch(1).concurrency(2);
    // Ids by index: an id type that borrows (`&str`) trips rustc's check
    // that the warmer's future is `Send` ("FnOnce is not general enough").
    let key = |i: &usize| format!("lookup:{}", LOOKUPS[*i]);
    cache
        .warm_ids(0..LOOKUPS.len(), key, LOOKUP_TTL, options, move |ids| {
            let db = Arc::clone(&db);
            async move {
                let mut found = Vec::with_capacity(ids.len());
                for i in ids {
                    found.push((i, db.lookup(LOOKUPS[i]).await?));
                }
                Ok::<_, DbError>(found)
            }
        })
        .await
}

/// Warms the lookups now and then every `every` (less up to 10%), so that
/// an invalidated or evicted lookup comes back without a reader paying.
pub fn add_lookup_warmer(cache: &Cache, db: Arc<Db>, every: Duration) {
    cache.add_warmer("lookups", every, 10, move |cache| {
        let db = Arc::clone(&db);
        async move { warm_lookups(&cache, db).await }
    });
}
