//! (placeholder: filled in by the ildcp work)
