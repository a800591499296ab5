//! `ilp-actors`: the runtime of ilp-connector. Each peer account, the router, the route
//! broadcaster, the balance keeper and the settlement engine is a supervised actix actor; they
//! exchange the typed messages of [`messages`]. Business rules live in the `ilp` crate; a handler
//! here calls the core and applies what it returns.

pub mod admin;
pub mod balance_keeper;
pub mod clock;
pub mod engine_client;
pub mod http_serve;
pub mod link;
pub mod loadgen;
pub mod log;
pub mod messages;
pub mod metrics;
pub mod node;
pub mod paid_client;
pub mod paid_proxy;
pub mod payer;
pub mod payment_log;
pub mod payments;
pub mod peer_account;
pub mod receiver;
pub mod reload;
pub mod replay;
pub mod route_broadcaster;
pub mod router;
pub mod settlement_api;
pub mod settlement_engine;
pub mod shutdown;
pub mod spsp_client;
pub mod spsp_server;
pub mod store;
pub mod supervise;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tls;
pub mod webhooks;
