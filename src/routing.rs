//! (placeholder: filled in by the routing work)
