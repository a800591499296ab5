//! (placeholder: filled in by the rates work)
