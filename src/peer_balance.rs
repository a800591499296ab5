//! (placeholder: filled in by the peer_balance work)
