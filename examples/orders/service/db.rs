//! The database: SQLite (a file, created and seeded at start) or
//! PostgreSQL, through sqlx's `Any` driver so that one set of queries
//! serves both. Every statement is counted, so that the load generator
//! can show what the cache saves the database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

use super::model::{
    Customer, CustomerInput, DbError, Lookup, Order, OrderInput, OrderLine, Product, ProductInput,
    StateChange, Tenant, LOOKUPS,
};

/// Rows per page of every list.
pub const PAGE_SIZE: i64 = 20;
/// Products shown beside a product on its page.
pub const RELATED: i64 = 8;
/// The states an order moves through (`order_states` ids 1..=6).
pub const STATES: i64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    queries: AtomicU64,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

const CUSTOMER: &str = "SELECT id, name, email, country_id, created_at FROM customers";
const PRODUCT: &str =
    "SELECT id, name, category_id, brand_id, price_cents, stock, updated_at FROM products";
const ORDER: &str =
    "SELECT id, customer_id, state_id, carrier_id, total_cents, created_at, updated_at FROM orders";

fn customer(row: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        email: row.try_get(2)?,
        country_id: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

fn product(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        category_id: row.try_get(2)?,
        brand_id: row.try_get(3)?,
        price_cents: row.try_get(4)?,
        stock: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

fn order(row: &AnyRow) -> Result<Order, sqlx::Error> {
    Ok(Order {
        id: row.try_get(0)?,
        customer_id: row.try_get(1)?,
        state_id: row.try_get(2)?,
        carrier_id: row.try_get(3)?,
        total_cents: row.try_get(4)?,
        created_at: row.try_get(5)?,
        updated_at: row.try_get(6)?,
    })
}

fn lookup_row(row: &AnyRow) -> Result<Lookup, sqlx::Error> {
    Ok(Lookup {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
    })
}

fn order_line(row: &AnyRow) -> Result<OrderLine, sqlx::Error> {
    Ok(OrderLine {
        id: row.try_get(0)?,
        customer: row.try_get(1)?,
        state_id: row.try_get(2)?,
        total_cents: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

fn state_change(row: &AnyRow) -> Result<StateChange, sqlx::Error> {
    Ok(StateChange {
        state_id: row.try_get(0)?,
        at: row.try_get(1)?,
    })
}

fn id(row: &AnyRow) -> Result<i64, sqlx::Error> {
    row.try_get(0)
}

/// Every row, read by `read`.
fn all<T>(rows: &[AnyRow], read: fn(&AnyRow) -> Result<T, sqlx::Error>) -> Result<Vec<T>, DbError> {
    Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
}

impl Db {
    /// Connects, creates the tables when missing and seeds them when empty:
    /// `scale` times 200 customers, 500 products and 1,000 orders per
    /// tenant. `schema` puts PostgreSQL's tables in a schema of their own.
    pub async fn open(
        url: &str,
        schema: Option<&str>,
        tenants: &[Tenant],
        scale: u32,
    ) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres") {
            Dialect::Postgres
        } else if url.starts_with("sqlite") {
            Dialect::Sqlite
        } else {
            return Err(DbError::invalid(format!(
                "DATABASE_URL {url:?}: write sqlite://<file> or postgres://.."
            )));
        };
        let mut options = AnyPoolOptions::new().max_connections(16);
        if let Some(schema) = schema {
            if dialect == Dialect::Postgres {
                let set = format!("SET search_path TO \"{schema}\"");
                options = options.after_connect(move |conn, _| {
                    let set = set.clone();
                    Box::pin(async move { conn.execute(set.as_str()).await.map(|_| ()) })
                });
                let admin = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?;
                admin
                    .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                    .await?;
                admin.close().await;
            }
        }
        let pool = options.connect(url).await?;
        let db = Db {
            pool,
            dialect,
            queries: AtomicU64::new(0),
        };
        if dialect == Dialect::Sqlite {
            // Several instances may share the file: readers do not wait for
            // a writer, and a writer waits its turn instead of failing.
            db.pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        // Instances starting together create and seed once: SQLite's
        // transaction holds the write lock, PostgreSQL's an advisory lock.
        let mut tx = db.transaction().await?;
        if dialect == Dialect::Postgres {
            tx.execute("SELECT pg_advisory_xact_lock(7235)").await?;
        }
        db.create(&mut tx).await?;
        seed(&mut tx, tenants, scale).await?;
        tx.commit().await?;
        Ok(db)
    }

    /// Statements run so far (seeding excluded).
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    async fn create(&self, tx: &mut Transaction<'static, Any>) -> Result<(), DbError> {
        let id = match self.dialect {
            Dialect::Sqlite => "INTEGER PRIMARY KEY",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        let statements = [
            "CREATE TABLE IF NOT EXISTS lookups (kind TEXT NOT NULL, id BIGINT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (kind, id))".to_string(),
            format!("CREATE TABLE IF NOT EXISTS customers (id {id}, tenant TEXT NOT NULL, name TEXT NOT NULL, email TEXT NOT NULL, country_id BIGINT NOT NULL, created_at BIGINT NOT NULL)"),
            "CREATE INDEX IF NOT EXISTS customers_tenant ON customers (tenant, id)".to_string(),
            format!("CREATE TABLE IF NOT EXISTS products (id {id}, tenant TEXT NOT NULL, name TEXT NOT NULL, category_id BIGINT NOT NULL, brand_id BIGINT NOT NULL, price_cents BIGINT NOT NULL, stock BIGINT NOT NULL, updated_at BIGINT NOT NULL)"),
            "CREATE INDEX IF NOT EXISTS products_tenant ON products (tenant, id)".to_string(),
            "CREATE INDEX IF NOT EXISTS products_category ON products (tenant, category_id, id)".to_string(),
            format!("CREATE TABLE IF NOT EXISTS orders (id {id}, tenant TEXT NOT NULL, customer_id BIGINT NOT NULL, state_id BIGINT NOT NULL, carrier_id BIGINT NOT NULL, total_cents BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"),
            "CREATE INDEX IF NOT EXISTS orders_tenant ON orders (tenant, id)".to_string(),
            format!("CREATE TABLE IF NOT EXISTS order_history (id {id}, tenant TEXT NOT NULL, order_id BIGINT NOT NULL, state_id BIGINT NOT NULL, at BIGINT NOT NULL)"),
            "CREATE INDEX IF NOT EXISTS order_history_order ON order_history (tenant, order_id, id)".to_string(),
        ];
        for statement in statements {
            tx.execute(statement.as_str()).await?;
        }
        Ok(())
    }

    pub async fn lookup(&self, kind: &str) -> Result<Vec<Lookup>, DbError> {
        self.count();
        let rows = sqlx::query("SELECT id, name FROM lookups WHERE kind = $1 ORDER BY id")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        all(&rows, lookup_row)
    }

    pub async fn customer(&self, tenant: &Tenant, id: i64) -> Result<Option<Customer>, DbError> {
        self.count();
        let row = sqlx::query(&format!("{CUSTOMER} WHERE tenant = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(customer).transpose()?)
    }

    pub async fn customers(&self, tenant: &Tenant, page: u32) -> Result<Vec<Customer>, DbError> {
        self.count();
        let rows = sqlx::query(&format!(
            "{CUSTOMER} WHERE tenant = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(tenant.as_str())
        .bind(PAGE_SIZE)
        .bind(i64::from(page) * PAGE_SIZE)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, customer)
    }

    /// The products of `ids` that the tenant has, in one query.
    pub async fn products(&self, tenant: &Tenant, ids: &[i64]) -> Result<Vec<Product>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.count();
        let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "{PRODUCT} WHERE tenant = $1 AND id IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(tenant.as_str());
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        all(&rows, product)
    }

    pub async fn product_list(&self, tenant: &Tenant, page: u32) -> Result<Vec<Product>, DbError> {
        self.count();
        let rows = sqlx::query(&format!(
            "{PRODUCT} WHERE tenant = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(tenant.as_str())
        .bind(PAGE_SIZE)
        .bind(i64::from(page) * PAGE_SIZE)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, product)
    }

    /// The ids of the first products of a category.
    pub async fn category_ids(&self, tenant: &Tenant, category: i64) -> Result<Vec<i64>, DbError> {
        self.count();
        let rows = sqlx::query(
            "SELECT id FROM products WHERE tenant = $1 AND category_id = $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(category)
        .bind(RELATED + 1)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, id)
    }

    pub async fn order(&self, tenant: &Tenant, id: i64) -> Result<Option<Order>, DbError> {
        self.count();
        let row = sqlx::query(&format!("{ORDER} WHERE tenant = $1 AND id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(order).transpose()?)
    }

    pub async fn orders(&self, tenant: &Tenant, page: u32) -> Result<Vec<OrderLine>, DbError> {
        self.count();
        let rows = sqlx::query(
            "SELECT o.id, c.name, o.state_id, o.total_cents, o.created_at \
             FROM orders o JOIN customers c ON c.id = o.customer_id \
             WHERE o.tenant = $1 ORDER BY o.id DESC LIMIT $2 OFFSET $3",
        )
        .bind(tenant.as_str())
        .bind(PAGE_SIZE)
        .bind(i64::from(page) * PAGE_SIZE)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, order_line)
    }

    pub async fn history(&self, tenant: &Tenant, order: i64) -> Result<Vec<StateChange>, DbError> {
        self.count();
        let rows = sqlx::query(
            "SELECT state_id, at FROM order_history WHERE tenant = $1 AND order_id = $2 ORDER BY id",
        )
        .bind(tenant.as_str())
        .bind(order)
        .fetch_all(&self.pool)
        .await?;
        all(&rows, state_change)
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>, DbError> {
        self.count();
        self.transaction().await
    }

    /// SQLite's transactions take the write lock at once: one that reads
    /// first and writes later would fail with "database is locked" when
    /// another wrote in between, instead of waiting its turn.
    async fn transaction(&self) -> Result<Transaction<'static, Any>, DbError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn create_customer(
        &self,
        tenant: &Tenant,
        input: &CustomerInput,
    ) -> Result<Customer, DbError> {
        self.count();
        let row = sqlx::query(
            "INSERT INTO customers (tenant, name, email, country_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id, name, email, country_id, created_at",
        )
        .bind(tenant.as_str())
        .bind(&input.name)
        .bind(&input.email)
        .bind(input.country_id)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(customer(&row)?)
    }

    pub async fn update_customer(
        &self,
        tenant: &Tenant,
        id: i64,
        input: &CustomerInput,
    ) -> Result<Option<Customer>, DbError> {
        self.count();
        let row = sqlx::query(
            "UPDATE customers SET name = $3, email = $4, country_id = $5 \
             WHERE tenant = $1 AND id = $2 RETURNING id, name, email, country_id, created_at",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(&input.name)
        .bind(&input.email)
        .bind(input.country_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(customer).transpose()?)
    }

    /// Deletes a customer that has no orders; `Ok(false)` when there is
    /// none, an error when orders still name it.
    pub async fn delete_customer(&self, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        self.count();
        let orders: i64 =
            sqlx::query("SELECT COUNT(*) FROM orders WHERE tenant = $1 AND customer_id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if orders > 0 {
            return Err(DbError::invalid(format!(
                "customer {id} has {orders} orders: delete them first"
            )));
        }
        self.count();
        let done = sqlx::query("DELETE FROM customers WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn create_product(
        &self,
        tenant: &Tenant,
        input: &ProductInput,
    ) -> Result<Product, DbError> {
        self.count();
        let row = sqlx::query(
            "INSERT INTO products (tenant, name, category_id, brand_id, price_cents, stock, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, name, category_id, brand_id, price_cents, stock, updated_at",
        )
        .bind(tenant.as_str())
        .bind(&input.name)
        .bind(input.category_id)
        .bind(input.brand_id)
        .bind(input.price_cents)
        .bind(input.stock)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(product(&row)?)
    }

    pub async fn update_product(
        &self,
        tenant: &Tenant,
        id: i64,
        input: &ProductInput,
    ) -> Result<Option<Product>, DbError> {
        self.count();
        let row = sqlx::query(
            "UPDATE products SET name = $3, category_id = $4, brand_id = $5, price_cents = $6, \
             stock = $7, updated_at = $8 WHERE tenant = $1 AND id = $2 \
             RETURNING id, name, category_id, brand_id, price_cents, stock, updated_at",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(&input.name)
        .bind(input.category_id)
        .bind(input.brand_id)
        .bind(input.price_cents)
        .bind(input.stock)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(product).transpose()?)
    }

    pub async fn delete_product(&self, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
        self.count();
        let done = sqlx::query("DELETE FROM products WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Creates an order in state 1, with its first history line, in one
    /// transaction.
    pub async fn create_order(
        &self,
        tenant: &Tenant,
        input: &OrderInput,
    ) -> Result<Order, DbError> {
        let mut tx = self.begin().await?;
        self.count();
        let known: i64 =
            sqlx::query("SELECT COUNT(*) FROM customers WHERE tenant = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(input.customer_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        if known == 0 {
            return Err(DbError::invalid(format!(
                "no customer {} for this tenant",
                input.customer_id
            )));
        }
        let at = now();
        self.count();
        let row = sqlx::query(
            "INSERT INTO orders (tenant, customer_id, state_id, carrier_id, total_cents, created_at, updated_at) \
             VALUES ($1, $2, 1, $3, $4, $5, $5) \
             RETURNING id, customer_id, state_id, carrier_id, total_cents, created_at, updated_at",
        )
        .bind(tenant.as_str())
        .bind(input.customer_id)
        .bind(input.carrier_id)
        .bind(input.total_cents)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let created = order(&row)?;
        self.count();
        sqlx::query(
            "INSERT INTO order_history (tenant, order_id, state_id, at) VALUES ($1, $2, 1, $3)",
        )
        .bind(tenant.as_str())
        .bind(created.id)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_order(
        &self,
        tenant: &Tenant,
        id: i64,
        input: &OrderInput,
    ) -> Result<Option<Order>, DbError> {
        self.count();
        let row = sqlx::query(
            "UPDATE orders SET customer_id = $3, carrier_id = $4, total_cents = $5, updated_at = $6 \
             WHERE tenant = $1 AND id = $2 \
             RETURNING id, customer_id, state_id, carrier_id, total_cents, created_at, updated_at",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(input.customer_id)
        .bind(input.carrier_id)
        .bind(input.total_cents)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(order).transpose()?)
    }

    /// Moves an order to `state` and records it in its history, in one
    /// transaction.
    pub async fn set_order_state(
        &self,
        tenant: &Tenant,
        id: i64,
        state: i64,
    ) -> Result<Option<Order>, DbError> {
        if !(1..=STATES).contains(&state) {
            return Err(DbError::invalid(format!(
                "state {state}: write one of 1..={STATES}"
            )));
        }
        let mut tx = self.begin().await?;
        let at = now();
        self.count();
        let row = sqlx::query(
            "UPDATE orders SET state_id = $3, updated_at = $4 WHERE tenant = $1 AND id = $2 \
             RETURNING id, customer_id, state_id, carrier_id, total_cents, created_at, updated_at",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(state)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        self.count();
        sqlx::query(
            "INSERT INTO order_history (tenant, order_id, state_id, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(state)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(order(&row)?))
    }

    pub async fn delete_order(&self, tenant: &Tenant, id: i64) -> Result<bool, DbError> {
        let mut tx = self.begin().await?;
        self.count();
        sqlx::query("DELETE FROM order_history WHERE tenant = $1 AND order_id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.count();
        let done = sqlx::query("DELETE FROM orders WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Seeds the lookups once, and each tenant that has no products yet.
async fn seed(
    tx: &mut Transaction<'static, Any>,
    tenants: &[Tenant],
    scale: u32,
) -> Result<(), DbError> {
    let lookups: i64 = sqlx::query("SELECT COUNT(*) FROM lookups")
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if lookups == 0 {
        let names: [&[&str]; 6] = [
            &[
                "awaiting payment",
                "paid",
                "preparing",
                "shipped",
                "delivered",
                "cancelled",
            ],
            &[
                "shoes", "shirts", "trousers", "bags", "hats", "coats", "socks", "belts",
            ],
            &["acme", "globex", "initech", "umbrella", "hooli", "stark"],
            &["post", "courier", "pick-up point", "express"],
            &[
                "France", "Germany", "Spain", "Italy", "Portugal", "Belgium", "Austria",
            ],
            &["en", "fr", "de", "es", "it"],
        ];
        for (kind, names) in LOOKUPS.iter().zip(names) {
            for (i, name) in names.iter().enumerate() {
                sqlx::query("INSERT INTO lookups (kind, id, name) VALUES ($1, $2, $3)")
                    .bind(*kind)
                    .bind(i as i64 + 1)
                    .bind(*name)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    for tenant in tenants {
        let products: i64 = sqlx::query("SELECT COUNT(*) FROM products WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        if products == 0 {
            seed_tenant(tx, tenant, scale.max(1) as i64).await?;
        }
    }
    Ok(())
}

/// Inserts `rows` into `table` a few hundred at a time.
async fn insert_rows(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Value>],
) -> Result<(), DbError> {
    for chunk in rows.chunks(200) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for (i, row) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for j in 0..row.len() {
                n += 1;
                if j > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    Value::Int(v) => query.bind(*v),
                    Value::Text(v) => query.bind(v.clone()),
                };
            }
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

enum Value {
    Int(i64),
    Text(String),
}

async fn seed_tenant(
    tx: &mut Transaction<'static, Any>,
    tenant: &Tenant,
    scale: i64,
) -> Result<(), DbError> {
    // The same data for a tenant on every run and every database.
    let mut rng = fastrand::Rng::with_seed(tenant.as_str().bytes().map(u64::from).sum());
    let t = || Value::Text(tenant.as_str().to_string());
    let at = now();
    let (customers, products, orders) = (200 * scale, 500 * scale, 1_000 * scale);
    let rows: Vec<Vec<Value>> = (1..=customers)
        .map(|i| {
            vec![
                t(),
                Value::Text(format!("{} customer {i}", tenant.as_str())),
                Value::Text(format!("c{i}@{}.example", tenant.as_str())),
                Value::Int(rng.i64(1..=7)),
                Value::Int(at),
            ]
        })
        .collect();
    let columns = ["tenant", "name", "email", "country_id", "created_at"];
    insert_rows(tx, "customers", &columns, &rows).await?;
    let customer_ids = sqlx::query("SELECT id FROM customers WHERE tenant = $1")
        .bind(tenant.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let customer_ids = all(&customer_ids, id)?;
    let rows: Vec<Vec<Value>> = (1..=products)
        .map(|i| {
            vec![
                t(),
                Value::Text(format!("product {i}")),
                Value::Int(rng.i64(1..=8)),
                Value::Int(rng.i64(1..=6)),
                Value::Int(rng.i64(500..=50_000)),
                Value::Int(rng.i64(0..=500)),
                Value::Int(at),
            ]
        })
        .collect();
    let columns = [
        "tenant",
        "name",
        "category_id",
        "brand_id",
        "price_cents",
        "stock",
        "updated_at",
    ];
    insert_rows(tx, "products", &columns, &rows).await?;
    let rows: Vec<Vec<Value>> = (0..orders)
        .map(|_| {
            let created = at - rng.i64(0..=90 * 86_400);
            vec![
                t(),
                Value::Int(customer_ids[rng.usize(..customer_ids.len())]),
                Value::Int(rng.i64(1..=5)),
                Value::Int(rng.i64(1..=4)),
                Value::Int(rng.i64(1_000..=200_000)),
                Value::Int(created),
                Value::Int(created),
            ]
        })
        .collect();
    let columns = [
        "tenant",
        "customer_id",
        "state_id",
        "carrier_id",
        "total_cents",
        "created_at",
        "updated_at",
    ];
    insert_rows(tx, "orders", &columns, &rows).await?;
    // Each order went through the states before its own.
    let rows: Vec<Vec<Value>> = sqlx::query("SELECT id, state_id FROM orders WHERE tenant = $1")
        .bind(tenant.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?
        .into_iter()
        .flat_map(|(id, state)| {
            (1..=state).map(move |s| vec![Value::Int(id), Value::Int(s), Value::Int(at)])
        })
        .map(|mut row| {
            row.insert(0, t());
            row
        })
        .collect();
    let columns = ["tenant", "order_id", "state_id", "at"];
    insert_rows(tx, "order_history", &columns, &rows).await?;
    Ok(())
}
