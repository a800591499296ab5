//! ILPv4 packets (RFC 27): Prepare, Fulfill, Reject, their error codes and timestamps, and
//! ILP addresses (RFC 15).

mod address;

pub use address::{validate_address, validate_segment, Address, AddressError, MAX_ADDRESS_LEN};
