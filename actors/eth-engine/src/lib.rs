//! An RFC 38 settlement engine that settles in native ETH on an Ethereum chain over JSON-RPC:
//! [`engine`] pays and watches, [`api`] serves the connector, [`eth`] signs, [`rpc`] talks to
//! the node.
pub mod api;
pub mod config;
pub mod engine;
pub mod eth;
pub mod rpc;
