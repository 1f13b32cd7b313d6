//! Routes: JSON over the cached reads and the invalidating writes, the
//! tenant from the `x-tenant` header.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_runtime::Cache;
use serde::Deserialize;

use super::caching;
use super::db::Db;
use super::model::{
    Customer, CustomerInput, DbError, Lookup, Order, OrderInput, OrderLine, Product, ProductInput,
    ProductPage, StateChange, Tenant, LOOKUPS,
};

#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Db>,
    pub cache: Cache,
}

/// An answer that is not the resource: its status and a JSON `error`.
pub enum ApiError {
    BadRequest(String),
    NotFound,
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".to_string()),
            ApiError::Db(e) if e.is_invalid() => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            ApiError::Db(e) => {
                tracing::error!(error = %e, "database");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Tenant, ApiError> {
        let value = parts
            .headers
            .get("x-tenant")
            .ok_or_else(|| ApiError::BadRequest("send the tenant in an x-tenant header".into()))?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest("x-tenant is not text".into()))?;
        Tenant::parse(value).map_err(ApiError::BadRequest)
    }
}

/// The deepest page a list serves: keys stay few whatever the clients ask.
const MAX_PAGE: u32 = 1_000;

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<u32>,
}

impl PageQuery {
    fn page(&self) -> Result<u32, ApiError> {
        match self.page.unwrap_or(0) {
            page if page <= MAX_PAGE => Ok(page),
            page => Err(ApiError::BadRequest(format!(
                "page {page}: the last page served is {MAX_PAGE}"
            ))),
        }
    }
}

type Answer<T> = Result<Json<T>, ApiError>;

fn found<T>(value: Option<T>) -> Answer<T> {
    value.map(Json).ok_or(ApiError::NotFound)
}

fn gone(deleted: bool) -> Result<StatusCode, ApiError> {
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

async fn lookup(State(s): State<AppState>, Path(kind): Path<String>) -> Answer<Vec<Lookup>> {
    let Some(kind) = LOOKUPS.iter().find(|k| **k == kind) else {
        return Err(ApiError::BadRequest(format!(
            "no lookup {kind:?}: one of {}",
            LOOKUPS.join(", ")
        )));
    };
    Ok(Json(caching::lookup(&s.db, kind).await?))
}

async fn orders(
    State(s): State<AppState>,
    tenant: Tenant,
    Query(q): Query<PageQuery>,
) -> Answer<Vec<OrderLine>> {
    Ok(Json(caching::orders(&s.db, &tenant, q.page()?).await?))
}

async fn order(State(s): State<AppState>, tenant: Tenant, Path(id): Path<i64>) -> Answer<Order> {
    found(caching::order(&s.db, &tenant, id).await?)
}

async fn order_history(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Answer<Vec<StateChange>> {
    Ok(Json(caching::order_history(&s.db, &tenant, id).await?))
}

async fn create_order(
    State(s): State<AppState>,
    tenant: Tenant,
    Json(input): Json<OrderInput>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let created = caching::create_order(&s.db, &tenant, &input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn update_order(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
    Json(input): Json<OrderInput>,
) -> Answer<Order> {
    found(caching::update_order(&s.db, &tenant, id, &input).await?)
}

#[derive(Deserialize)]
pub struct StateInput {
    state_id: i64,
}

async fn set_order_state(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
    Json(input): Json<StateInput>,
) -> Answer<Order> {
    found(caching::set_order_state(&s.db, &tenant, id, input.state_id).await?)
}

async fn delete_order(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    gone(caching::delete_order(&s.db, &tenant, id).await?)
}

async fn customers(
    State(s): State<AppState>,
    tenant: Tenant,
    Query(q): Query<PageQuery>,
) -> Answer<Vec<Customer>> {
    Ok(Json(caching::customers(&s.db, &tenant, q.page()?).await?))
}

async fn customer(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Answer<Customer> {
    found(caching::customer(&s.db, &tenant, id).await?)
}

async fn create_customer(
    State(s): State<AppState>,
    tenant: Tenant,
    Json(input): Json<CustomerInput>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    let created = caching::create_customer(&s.db, &tenant, &input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn update_customer(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
    Json(input): Json<CustomerInput>,
) -> Answer<Customer> {
    found(caching::update_customer(&s.db, &tenant, id, &input).await?)
}

async fn delete_customer(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    gone(caching::delete_customer(&s.db, &tenant, id).await?)
}

async fn products(
    State(s): State<AppState>,
    tenant: Tenant,
    Query(q): Query<PageQuery>,
) -> Answer<Vec<Product>> {
    Ok(Json(
        caching::product_list(&s.db, &tenant, q.page()?).await?,
    ))
}

async fn product(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Answer<Product> {
    found(caching::product(&s.db, &tenant, id).await?)
}

async fn product_page(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Answer<ProductPage> {
    found(caching::product_page(&s.db, &tenant, id).await?)
}

async fn create_product(
    State(s): State<AppState>,
    tenant: Tenant,
    Json(input): Json<ProductInput>,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let created = caching::create_product(&s.db, &tenant, &input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn update_product(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
    Json(input): Json<ProductInput>,
) -> Answer<Product> {
    found(caching::update_product(&s.db, &tenant, id, &input).await?)
}

async fn delete_product(
    State(s): State<AppState>,
    tenant: Tenant,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    gone(caching::delete_product(&s.db, &tenant, id).await?)
}

/// The cache's series and the service's own: statements sent to the
/// database.
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = s.cache.prometheus_text();
    text.push_str(&format!(
        "# HELP orders_db_queries_total Statements the service sent to its database.\n\
         # TYPE orders_db_queries_total counter\n\
         orders_db_queries_total {}\n",
        s.db.queries()
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// Runs a request with the service's cache standing in for the global one,
/// so that a test can run two instances, each with its own, in one process.
async fn in_cache(State(cache): State<Cache>, request: Request, next: Next) -> Response {
    cache.scope(next.run(request)).await
}

/// The service's routes, without the layers that `super::app` adds.
pub fn routes(state: AppState) -> Router {
    let cache = state.cache.clone();
    Router::new()
        .route("/lookups/{kind}", get(lookup))
        .route("/orders", get(orders).post(create_order))
        .route(
            "/orders/{id}",
            get(order).put(update_order).delete(delete_order),
        )
        .route("/orders/{id}/history", get(order_history))
        .route("/orders/{id}/state", post(set_order_state))
        .route("/customers", get(customers).post(create_customer))
        .route(
            "/customers/{id}",
            get(customer).put(update_customer).delete(delete_customer),
        )
        .route("/products", get(products).post(create_product))
        .route(
            "/products/{id}",
            get(product).put(update_product).delete(delete_product),
        )
        .route("/products/{id}/page", get(product_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(cache, in_cache))
}
