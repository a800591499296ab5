//! STREAM (RFC 29) wire layer: packets and frames, the AES-256-GCM envelope with the
//! condition/fulfillment derivation, and STREAM receipts (RFC 39).
//!
//! Receiving a packet is `StreamKeys::decrypt_packet(prepare.data())`, then checking that the
//! packet's `packet_type` matches the ILP packet it came in, then `keys.fulfillment(data)`
//! to fulfill. The connection state machine (flow control, stream bookkeeping) builds on this.

pub mod credentials;
pub mod crypto;
pub mod frame;
pub mod packet;
pub mod receipt;
pub mod receiver;

pub use crypto::{
    encryption_key, fulfillment_key, hmac_sha256, sha256, CryptoError, DecryptPacketError,
    StreamKeys, ENCRYPTION_OVERHEAD, IV_LEN, MAX_PLAINTEXT_LEN, TAG_LEN,
};
pub use frame::{frame_type, ErrorCode, Frame, FrameError};
pub use packet::{StreamPacket, StreamPacketError, STREAM_VERSION};
pub use receipt::{
    Receipt, ReceiptError, RECEIPT_LEN, RECEIPT_NONCE_LEN, RECEIPT_SECRET_LEN, RECEIPT_VERSION,
};
