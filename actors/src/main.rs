//! `ilp-connector`: the node binary (placeholder until the connector issue lands).

fn main() {}
