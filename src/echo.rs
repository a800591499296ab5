//! (placeholder: filled in by the echo work)
