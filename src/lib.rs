//! `ilp`: the sans-IO core of ilp-connector. Every Interledger wire format and state machine,
//! plus the policy math and the configuration schema, with no runtime: nothing here reads a
//! clock, a socket or the OS random number generator. Callers pass `now` and randomness in.
//!
//! Crates that need I/O (actix actors, WebSocket and HTTP links, RocksDB) live in `actors/`.

pub mod btp;
pub mod ccp;
pub mod circular;
pub mod config;
pub mod echo;
pub mod ildcp;
pub mod oer;
pub mod packet;
pub mod paid_http;
pub mod payment_pointer;
pub mod peer_balance;
pub mod peer_protocol;
pub mod policy;
pub mod psk2;
pub mod rates;
pub mod rfc38;
pub mod routing;
pub mod sender;
pub mod settle;
pub mod spsp;
pub mod stream;
