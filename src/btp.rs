//! (placeholder: filled in by the btp work)
