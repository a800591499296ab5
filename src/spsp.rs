//! (placeholder: filled in by the spsp work)
