//! (placeholder: filled in by the ccp work)
