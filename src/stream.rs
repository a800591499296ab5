//! (placeholder: filled in by the stream work)
