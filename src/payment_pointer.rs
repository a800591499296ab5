//! (placeholder: filled in by the payment_pointer work)
