//! CCP wire messages, byte-for-byte as `ilp-protocol-ccp` writes them: the route control request
//! (`peer.route.control`), the route update request (`peer.route.update`), and their routes and
//! route properties. Both travel as the data of a zero-amount peer-protocol Prepare; the answer
//! is a Fulfill with the peer-protocol fulfillment and no data.

use super::{CCP_CONTROL_DESTINATION, CCP_UPDATE_DESTINATION};
use crate::oer::{OerError, OerWrite, Reader};
use crate::packet::{Address, AddressError, Prepare, Timestamp};
use crate::peer_protocol::{check_peer_request, peer_request, PeerProtocolError};
use bytes::BufMut;
use std::fmt;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CcpError {
    #[error("malformed CCP message: {0}")]
    Oer(#[from] OerError),
    #[error("unknown route control mode {0}")]
    UnknownMode(u8),
    #[error("speaker address is invalid: {0}")]
    InvalidSpeaker(AddressError),
    #[error("route property flags {0:#04x} are not a canonical encoding")]
    NonCanonicalPropFlags(u8),
    #[error("CCP: {0}")]
    PeerProtocol(#[from] PeerProtocolError),
}

/// Identifies one incarnation of a speaker's routing table; a new id means epochs restart at 0.
/// Written on the wire as 16 raw bytes, shown as a UUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RoutingTableId(pub [u8; 16]);

impl fmt::Display for RoutingTableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoutingTableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoutingTableId({self})")
    }
}

/// Whether the requester wants route updates pushed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Idle = 0,
    Sync = 1,
}

impl TryFrom<u8> for Mode {
    type Error = CcpError;
    fn try_from(b: u8) -> Result<Self, CcpError> {
        match b {
            0 => Ok(Mode::Idle),
            1 => Ok(Mode::Sync),
            other => Err(CcpError::UnknownMode(other)),
        }
    }
}

/// Fewest bytes a string takes on the wire: an empty one is its length byte alone.
const MIN_STRING_LEN: usize = 1;
/// Fewest bytes a var-uint takes: a length byte and one value byte.
const MIN_COUNT_LEN: usize = 2;
/// Fewest bytes a route property takes: meta, id (2) and an empty value.
const MIN_PROP_LEN: usize = 1 + 2 + MIN_STRING_LEN;
/// Fewest bytes a route takes: empty prefix, empty path, auth (32), no properties.
pub const MIN_ROUTE_LEN: usize = MIN_STRING_LEN + MIN_COUNT_LEN + 32 + MIN_COUNT_LEN;

fn put_count(buf: &mut impl BufMut, n: usize) {
    buf.put_var_uint(n as u64);
}

fn read_strings(r: &mut Reader<'_>) -> Result<Vec<String>, CcpError> {
    let n = r.read_count(MIN_STRING_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.read_var_str()?.to_owned());
    }
    Ok(out)
}

fn put_strings(buf: &mut impl BufMut, items: &[String]) {
    put_count(buf, items.len());
    for s in items {
        buf.put_var_octet_string(s.as_bytes());
    }
}

/// Data of a `peer.route.control` request: the peer tells us whether to send it routes and
/// where it is in our routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteControlRequest {
    pub mode: Mode,
    pub last_known_routing_table_id: RoutingTableId,
    pub last_known_epoch: u32,
    pub features: Vec<String>,
}

impl RouteControlRequest {
    /// The `peer.route.control` Prepare carrying this request.
    pub fn to_prepare(&self, expires_at: Timestamp) -> Result<Prepare, CcpError> {
        Ok(peer_request(
            CCP_CONTROL_DESTINATION,
            expires_at,
            &self.encode(),
        )?)
    }

    /// Validates a `peer.route.control` Prepare received at `now` and decodes its data.
    pub fn from_prepare(prepare: &Prepare, now: Timestamp) -> Result<Self, CcpError> {
        check_peer_request(prepare, CCP_CONTROL_DESTINATION, now)?;
        Self::decode(prepare.data())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CcpError> {
        let mut r = Reader::new(bytes);
        let mode = Mode::try_from(r.read_u8()?)?;
        let last_known_routing_table_id = RoutingTableId(*r.read_array::<16>()?);
        let last_known_epoch = r.read_u32()?;
        let features = read_strings(&mut r)?;
        r.finish()?;
        Ok(RouteControlRequest {
            mode,
            last_known_routing_table_id,
            last_known_epoch,
            features,
        })
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.mode as u8);
        buf.put_slice(&self.last_known_routing_table_id.0);
        buf.put_u32(self.last_known_epoch);
        put_strings(buf, &self.features);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// Value of a route property: the UTF-8 flag on the wire says which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePropValue {
    Utf8(String),
    Bytes(Vec<u8>),
}

/// An attribute attached to an advertised route. No property ids are defined yet; they are
/// carried so that transitive ones could be relayed.
///
/// The flags follow the JS encoder's rules, which the decoder enforces: a non-optional
/// (well-known) property is always transitive and never partial, and only a transitive optional
/// property can be partial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProp {
    pub is_optional: bool,
    pub is_transitive: bool,
    pub is_partial: bool,
    pub id: u16,
    pub value: RoutePropValue,
}

const PROP_OPTIONAL: u8 = 0x80;
const PROP_TRANSITIVE: u8 = 0x40;
const PROP_PARTIAL: u8 = 0x20;
const PROP_UTF8: u8 = 0x10;

impl RouteProp {
    /// The meta byte exactly as `ilp-protocol-ccp` computes it.
    fn meta(&self) -> u8 {
        let mut meta = 0;
        if self.is_optional {
            meta |= PROP_OPTIONAL;
            if self.is_transitive {
                meta |= PROP_TRANSITIVE;
                if self.is_partial {
                    meta |= PROP_PARTIAL;
                }
            }
        } else {
            meta |= PROP_TRANSITIVE;
        }
        if matches!(self.value, RoutePropValue::Utf8(_)) {
            meta |= PROP_UTF8;
        }
        meta
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, CcpError> {
        let meta = r.read_u8()?;
        let is_optional = meta & PROP_OPTIONAL != 0;
        let is_transitive = meta & PROP_TRANSITIVE != 0;
        let is_partial = meta & PROP_PARTIAL != 0;
        let is_utf8 = meta & PROP_UTF8 != 0;
        let canonical = meta & 0x0f == 0
            && if is_optional {
                is_transitive || !is_partial
            } else {
                is_transitive && !is_partial
            };
        if !canonical {
            return Err(CcpError::NonCanonicalPropFlags(meta));
        }
        let id = r.read_u16()?;
        let value = if is_utf8 {
            RoutePropValue::Utf8(r.read_var_str()?.to_owned())
        } else {
            RoutePropValue::Bytes(r.read_var_octet_string()?.to_vec())
        };
        Ok(RouteProp {
            is_optional,
            is_transitive,
            is_partial,
            id,
            value,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.meta());
        buf.put_u16(self.id);
        match &self.value {
            RoutePropValue::Utf8(s) => buf.put_var_octet_string(s.as_bytes()),
            RoutePropValue::Bytes(b) => buf.put_var_octet_string(b),
        }
    }
}

/// One advertised route. Prefix and path hops are kept as strings: the codec carries whatever
/// the peer sent, and the receiver's import filter decides what to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    /// Speakers the route passes through, nearest (the advertising peer) first.
    pub path: Vec<String>,
    pub auth: [u8; 32],
    pub props: Vec<RouteProp>,
}

impl Route {
    fn read(r: &mut Reader<'_>) -> Result<Self, CcpError> {
        let prefix = r.read_var_str()?.to_owned();
        let path = read_strings(r)?;
        let auth = *r.read_array::<32>()?;
        let n = r.read_count(MIN_PROP_LEN)?;
        let mut props = Vec::with_capacity(n);
        for _ in 0..n {
            props.push(RouteProp::read(r)?);
        }
        Ok(Route {
            prefix,
            path,
            auth,
            props,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        buf.put_var_octet_string(self.prefix.as_bytes());
        put_strings(buf, &self.path);
        buf.put_slice(&self.auth);
        put_count(buf, self.props.len());
        for p in &self.props {
            p.write(buf);
        }
    }
}

/// Data of a `peer.route.update` request: the changes to the speaker's routing table between
/// two epochs, or a heartbeat when there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteUpdateRequest {
    pub routing_table_id: RoutingTableId,
    pub current_epoch_index: u32,
    pub from_epoch_index: u32,
    pub to_epoch_index: u32,
    /// Milliseconds the receiver may keep these routes without hearing from the speaker.
    pub hold_down_time: u32,
    pub speaker: Address,
    pub new_routes: Vec<Route>,
    pub withdrawn_routes: Vec<String>,
}

impl RouteUpdateRequest {
    /// The `peer.route.update` Prepare carrying this request. Fails if the encoded update is
    /// over the 32767-byte data limit (the sender keeps batches below it).
    pub fn to_prepare(&self, expires_at: Timestamp) -> Result<Prepare, CcpError> {
        Ok(peer_request(
            CCP_UPDATE_DESTINATION,
            expires_at,
            &self.encode(),
        )?)
    }

    /// Validates a `peer.route.update` Prepare received at `now` and decodes its data.
    pub fn from_prepare(prepare: &Prepare, now: Timestamp) -> Result<Self, CcpError> {
        check_peer_request(prepare, CCP_UPDATE_DESTINATION, now)?;
        Self::decode(prepare.data())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CcpError> {
        let mut r = Reader::new(bytes);
        let routing_table_id = RoutingTableId(*r.read_array::<16>()?);
        let current_epoch_index = r.read_u32()?;
        let from_epoch_index = r.read_u32()?;
        let to_epoch_index = r.read_u32()?;
        let hold_down_time = r.read_u32()?;
        let speaker =
            Address::try_from(r.read_var_octet_string()?).map_err(CcpError::InvalidSpeaker)?;
        let n = r.read_count(MIN_ROUTE_LEN)?;
        let mut new_routes = Vec::with_capacity(n);
        for _ in 0..n {
            new_routes.push(Route::read(&mut r)?);
        }
        let withdrawn_routes = read_strings(&mut r)?;
        r.finish()?;
        Ok(RouteUpdateRequest {
            routing_table_id,
            current_epoch_index,
            from_epoch_index,
            to_epoch_index,
            hold_down_time,
            speaker,
            new_routes,
            withdrawn_routes,
        })
    }

    pub fn encode_to(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.routing_table_id.0);
        buf.put_u32(self.current_epoch_index);
        buf.put_u32(self.from_epoch_index);
        buf.put_u32(self.to_epoch_index);
        buf.put_u32(self.hold_down_time);
        buf.put_var_octet_string(self.speaker.as_bytes());
        put_count(buf, self.new_routes.len());
        for route in &self.new_routes {
            route.write(buf);
        }
        put_strings(buf, &self.withdrawn_routes);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::Engine;
    use proptest::prelude::*;

    pub(crate) fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/data/ccp/vectors.json")).unwrap()
    }

    pub(crate) fn table_id(uuid: &str) -> RoutingTableId {
        let bytes = hex::decode(uuid.replace('-', "")).unwrap();
        RoutingTableId(bytes.try_into().unwrap())
    }

    fn strings(v: &serde_json::Value) -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn control_vector() -> (Vec<u8>, RouteControlRequest) {
        let v = &vectors()["route_control_request"];
        let req = RouteControlRequest {
            mode: Mode::try_from(v["mode"].as_u64().unwrap() as u8).unwrap(),
            last_known_routing_table_id: table_id(
                v["last_known_routing_table_id"].as_str().unwrap(),
            ),
            last_known_epoch: v["last_known_epoch"].as_u64().unwrap() as u32,
            features: strings(&v["features"]),
        };
        (hex::decode(v["payload"].as_str().unwrap()).unwrap(), req)
    }

    fn update_fields(v: &serde_json::Value) -> RouteUpdateRequest {
        RouteUpdateRequest {
            routing_table_id: table_id(v["routing_table_id"].as_str().unwrap()),
            current_epoch_index: v["current_epoch_index"].as_u64().unwrap() as u32,
            from_epoch_index: v["from_epoch_index"].as_u64().unwrap() as u32,
            to_epoch_index: v["to_epoch_index"].as_u64().unwrap() as u32,
            hold_down_time: v["hold_down_time"].as_u64().unwrap() as u32,
            speaker: Address::try_from(v["speaker"].as_str().unwrap()).unwrap(),
            new_routes: vec![],
            withdrawn_routes: vec![],
        }
    }

    pub(crate) fn simple_update_vector() -> (Vec<u8>, RouteUpdateRequest) {
        let v = &vectors()["route_update_request_simple"];
        (
            hex::decode(v["payload"].as_str().unwrap()).unwrap(),
            update_fields(v),
        )
    }

    /// The complex vector exists only as a whole Prepare; its data is the Prepare's last field,
    /// whose length prefix (0x82 0x01 0x04 = 260 bytes) sits right after the destination.
    pub(crate) fn complex_update_vector() -> (Vec<u8>, RouteUpdateRequest) {
        let v = &vectors()["route_update_request_complex"];
        let prepare = hex::decode(v["prepare"].as_str().unwrap()).unwrap();
        let payload = prepare[prepare.len() - 260..].to_vec();
        let mut req = update_fields(v);
        let b64 = base64::engine::general_purpose::STANDARD;
        req.new_routes = v["new_routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Route {
                prefix: r["prefix"].as_str().unwrap().to_owned(),
                path: strings(&r["path"]),
                auth: b64
                    .decode(r["auth_base64"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                props: r["props"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| RouteProp {
                        is_optional: p["is_optional"].as_bool().unwrap(),
                        is_transitive: p["is_transitive"].as_bool().unwrap(),
                        is_partial: p["is_partial"].as_bool().unwrap(),
                        id: p["id"].as_u64().unwrap() as u16,
                        value: if p["is_utf8"].as_bool().unwrap() {
                            RoutePropValue::Utf8(p["value_utf8"].as_str().unwrap().to_owned())
                        } else {
                            RoutePropValue::Bytes(
                                hex::decode(p["value_hex"].as_str().unwrap()).unwrap(),
                            )
                        },
                    })
                    .collect(),
            })
            .collect();
        req.withdrawn_routes = strings(&v["withdrawn_routes"]);
        (payload, req)
    }

    #[test]
    fn routing_table_id_displays_as_uuid() {
        let id = table_id("70d1a134-a0df-4f47-964f-6e19e2ab3790");
        assert_eq!(id.to_string(), "70d1a134-a0df-4f47-964f-6e19e2ab3790");
        assert_eq!(
            format!("{:?}", RoutingTableId::default()),
            "RoutingTableId(00000000-0000-0000-0000-000000000000)"
        );
    }

    #[test]
    fn route_control_golden() {
        let (bytes, req) = control_vector();
        assert_eq!(RouteControlRequest::decode(&bytes), Ok(req.clone()));
        assert_eq!(req.encode(), bytes);
    }

    #[test]
    fn route_update_simple_golden() {
        let (bytes, req) = simple_update_vector();
        assert_eq!(RouteUpdateRequest::decode(&bytes), Ok(req.clone()));
        assert_eq!(req.encode(), bytes);
    }

    #[test]
    fn route_update_complex_golden() {
        let (bytes, req) = complex_update_vector();
        assert_eq!(bytes[..16], req.routing_table_id.0);
        assert_eq!(RouteUpdateRequest::decode(&bytes), Ok(req.clone()));
        assert_eq!(req.encode(), bytes);
    }

    #[test]
    fn route_control_errors() {
        let (good, _) = control_vector();
        // mode, table id and epoch take 21 bytes, the feature count (01 02) 2 more; a cut that
        // leaves fewer than 2 bytes (one per feature string) after the count fails the count
        for n in 0..good.len() {
            let expected = match n {
                23 | 24 => OerError::CountTooLarge(2),
                _ => OerError::UnexpectedEnd,
            };
            assert_eq!(
                RouteControlRequest::decode(&good[..n]),
                Err(CcpError::Oer(expected)),
                "prefix of {n} bytes"
            );
        }
        // the count says 2 features but only the first one fits
        assert_eq!(
            RouteControlRequest::decode(&good[..good.len() - 4]),
            Err(CcpError::Oer(OerError::UnexpectedEnd))
        );
        let mut trailing = good.clone();
        trailing.push(7);
        assert_eq!(
            RouteControlRequest::decode(&trailing),
            Err(CcpError::Oer(OerError::TrailingBytes(1)))
        );
        let mut bad_mode = good.clone();
        bad_mode[0] = 2;
        assert_eq!(
            RouteControlRequest::decode(&bad_mode),
            Err(CcpError::UnknownMode(2))
        );
        // feature count written as 02 00 02 (leading zero byte)
        let mut non_canonical = good[..21].to_vec();
        non_canonical.extend_from_slice(&[2, 0, 2, 3, b'f', b'o', b'o', 3, b'b', b'a', b'r']);
        assert_eq!(
            RouteControlRequest::decode(&non_canonical),
            Err(CcpError::Oer(OerError::NonCanonicalVarUint))
        );
        // a count far beyond the input
        let mut huge = good[..21].to_vec();
        huge.extend_from_slice(&[4, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            RouteControlRequest::decode(&huge),
            Err(CcpError::Oer(OerError::CountTooLarge(0xffff_ffff)))
        );
        // a feature that is not UTF-8
        let mut bad_utf8 = good[..21].to_vec();
        bad_utf8.extend_from_slice(&[1, 1, 2, 0xc3, 0x28]);
        assert_eq!(
            RouteControlRequest::decode(&bad_utf8),
            Err(CcpError::Oer(OerError::InvalidUtf8))
        );
        // a feature whose length prefix is longer than the input
        let mut oversize = good[..21].to_vec();
        oversize.extend_from_slice(&[1, 1, 0x82, 0x10, 0x00]);
        assert_eq!(
            RouteControlRequest::decode(&oversize),
            Err(CcpError::Oer(OerError::UnexpectedEnd))
        );
        // a feature whose length prefix is beyond what OER allows at all
        let mut too_long = good[..21].to_vec();
        too_long.extend_from_slice(&[1, 1, 0x84, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            RouteControlRequest::decode(&too_long),
            Err(CcpError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
    }

    /// Where each element count of `req`'s encoding ends, with its value and the fewest bytes
    /// one element takes, in the order the decoder reads them.
    fn count_positions(req: &RouteUpdateRequest) -> Vec<(usize, usize, usize)> {
        use crate::oer::{var_octet_string_size, var_uint_size};
        let count = |pos: &mut usize, n: usize, min: usize, out: &mut Vec<_>| {
            *pos += var_uint_size(n as u64);
            out.push((*pos, n, min));
        };
        let mut out = Vec::new();
        let mut pos = 16 + 16 + var_octet_string_size(req.speaker.len());
        count(&mut pos, req.new_routes.len(), MIN_ROUTE_LEN, &mut out);
        for route in &req.new_routes {
            pos += var_octet_string_size(route.prefix.len());
            count(&mut pos, route.path.len(), MIN_STRING_LEN, &mut out);
            pos += route
                .path
                .iter()
                .map(|h| var_octet_string_size(h.len()))
                .sum::<usize>();
            pos += 32;
            count(&mut pos, route.props.len(), MIN_PROP_LEN, &mut out);
            let mut buf = Vec::new();
            for p in &route.props {
                p.write(&mut buf);
            }
            pos += buf.len();
        }
        count(
            &mut pos,
            req.withdrawn_routes.len(),
            MIN_STRING_LEN,
            &mut out,
        );
        out
    }

    #[test]
    fn route_update_errors() {
        let (good, req) = complex_update_vector();
        let counts = count_positions(&req);
        assert_eq!(counts.len(), 6, "routes, 2 paths, 2 prop lists, withdrawn");
        for n in 0..good.len() {
            // The first count whose elements cannot fit in what is left of the cut input fails;
            // when every count read so far fits, the cut is found where the input runs out.
            let expected = counts
                .iter()
                .find(|(end, count, min)| *end <= n && n - end < count * min)
                .map_or(OerError::UnexpectedEnd, |(_, count, _)| {
                    OerError::CountTooLarge(*count as u64)
                });
            assert_eq!(
                RouteUpdateRequest::decode(&good[..n]),
                Err(CcpError::Oer(expected)),
                "prefix of {n} bytes"
            );
        }
        // spot checks of the model: cutting right after the route count (2 routes need 74
        // bytes) or inside the second route's path
        let route_count_end = 16 + 16 + 1 + "example.alice".len() + 2;
        assert_eq!(counts[0], (route_count_end, 2, MIN_ROUTE_LEN));
        assert_eq!(
            RouteUpdateRequest::decode(&good[..route_count_end + 73]),
            Err(CcpError::Oer(OerError::CountTooLarge(2)))
        );
        assert_eq!(
            RouteUpdateRequest::decode(&good[..route_count_end + 74]),
            Err(CcpError::Oer(OerError::UnexpectedEnd))
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0]);
        assert_eq!(
            RouteUpdateRequest::decode(&trailing),
            Err(CcpError::Oer(OerError::TrailingBytes(2)))
        );

        let (simple, mut req) = simple_update_vector();
        // speaker "example.alice" -> "example.,lice"
        let mut bad_speaker = simple.clone();
        bad_speaker[16 + 16 + 1 + 8] = b',';
        assert_eq!(
            RouteUpdateRequest::decode(&bad_speaker),
            Err(CcpError::InvalidSpeaker(AddressError::InvalidCharacter(8)))
        );
        // new-route count far beyond the input
        let mut huge = simple[..simple.len() - 4].to_vec();
        huge.extend_from_slice(&[2, 0x10, 0x00, 1, 0]);
        assert_eq!(
            RouteUpdateRequest::decode(&huge),
            Err(CcpError::Oer(OerError::CountTooLarge(0x1000)))
        );
        // empty var-uint for the withdrawn count
        let mut empty_count = simple[..simple.len() - 2].to_vec();
        empty_count.push(0);
        assert_eq!(
            RouteUpdateRequest::decode(&empty_count),
            Err(CcpError::Oer(OerError::EmptyVarUint))
        );
        // speaker length prefix beyond what OER allows at all
        let mut too_long = simple[..32].to_vec();
        too_long.extend_from_slice(&[0x84, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            RouteUpdateRequest::decode(&too_long),
            Err(CcpError::Oer(OerError::LengthTooLarge(0xffff_ffff)))
        );
        // route prefix, then a path hop, that is not UTF-8 (0xff replaces the last 'x')
        for (prefix, hop) in [("g.x", "g.a"), ("g.a", "g.x")] {
            let mut with_route = req.clone();
            with_route.new_routes = vec![Route {
                prefix: prefix.into(),
                path: vec![hop.into()],
                auth: [0; 32],
                props: vec![],
            }];
            let mut bytes = with_route.encode();
            let at = bytes.iter().rposition(|b| *b == b'x').unwrap();
            bytes[at] = 0xff;
            assert_eq!(
                RouteUpdateRequest::decode(&bytes),
                Err(CcpError::Oer(OerError::InvalidUtf8)),
                "prefix {prefix}, hop {hop}"
            );
        }
        // withdrawn prefix that is not UTF-8
        req.withdrawn_routes = vec!["g.x".into()];
        let mut bad_utf8 = req.encode();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(
            RouteUpdateRequest::decode(&bad_utf8),
            Err(CcpError::Oer(OerError::InvalidUtf8))
        );
    }

    fn with_prop_meta(meta: u8) -> Vec<u8> {
        let (_, mut req) = simple_update_vector();
        req.new_routes = vec![Route {
            prefix: "g.a".into(),
            path: vec![],
            auth: [0; 32],
            props: vec![RouteProp {
                is_optional: true,
                is_transitive: false,
                is_partial: false,
                id: 7,
                value: RoutePropValue::Bytes(vec![1]),
            }],
        }];
        let mut bytes = req.encode();
        // meta byte sits before id (2), length (1), value (1) and the withdrawn count (2)
        let at = bytes.len() - 7;
        assert_eq!(bytes[at], PROP_OPTIONAL);
        bytes[at] = meta;
        bytes
    }

    #[test]
    fn route_prop_flags() {
        for meta in [
            0x00, // well-known but not transitive
            0x60, // well-known and partial
            0xa0, // optional, non-transitive, partial
            0x81, // reserved bit
            0x88, // reserved bit
        ] {
            assert_eq!(
                RouteUpdateRequest::decode(&with_prop_meta(meta)),
                Err(CcpError::NonCanonicalPropFlags(meta)),
                "meta {meta:#04x}"
            );
        }
        for meta in [0x40, 0x80, 0xc0, 0xe0] {
            let req = RouteUpdateRequest::decode(&with_prop_meta(meta)).unwrap();
            assert_eq!(req.new_routes[0].props[0].meta(), meta);
        }
        // UTF-8 flag with a non-UTF-8 value
        assert_eq!(
            RouteUpdateRequest::decode(&with_prop_meta(0x90)).map(|_| ()),
            Ok(()),
            "0x01 is valid UTF-8"
        );
        let mut bad = with_prop_meta(0x90);
        let at = bad.len() - 3;
        bad[at] = 0xff;
        assert_eq!(
            RouteUpdateRequest::decode(&bad),
            Err(CcpError::Oer(OerError::InvalidUtf8))
        );
    }

    fn vector_packet(section: &str, key: &str) -> bytes::Bytes {
        bytes::Bytes::from(hex::decode(vectors()[section][key].as_str().unwrap()).unwrap())
    }

    /// The JS tests run with the clock at 2015-06-16T00:00:00Z and expire requests a minute later.
    const NOW: Timestamp = Timestamp::from_unix_millis(1_434_412_800_000);
    const EXPIRY: Timestamp = Timestamp::from_unix_millis(1_434_412_860_000);

    #[test]
    fn route_control_prepare_golden() {
        let (_, req) = control_vector();
        let bytes = vector_packet("route_control_request", "prepare");
        assert_eq!(req.to_prepare(EXPIRY).unwrap().as_bytes(), &bytes);
        let p = Prepare::parse(bytes).unwrap();
        assert_eq!(p.amount(), 0);
        assert_eq!(RouteControlRequest::from_prepare(&p, NOW), Ok(req));
    }

    #[test]
    fn route_update_prepare_golden() {
        for (section, (_, req)) in [
            ("route_update_request_simple", simple_update_vector()),
            ("route_update_request_complex", complex_update_vector()),
        ] {
            let bytes = vector_packet(section, "prepare");
            assert_eq!(req.to_prepare(EXPIRY).unwrap().as_bytes(), &bytes);
            let p = Prepare::parse(bytes).unwrap();
            assert_eq!(RouteUpdateRequest::from_prepare(&p, NOW), Ok(req));
        }
    }

    #[test]
    fn prepare_errors() {
        let control = |key: &str| {
            let p = Prepare::parse(vector_packet("route_control_request", key)).unwrap();
            RouteControlRequest::from_prepare(&p, NOW)
        };
        let update = |key: &str| {
            let p = Prepare::parse(vector_packet("route_update_request_simple", key)).unwrap();
            RouteUpdateRequest::from_prepare(&p, NOW)
        };
        let pp = CcpError::PeerProtocol;
        assert_eq!(
            control("prepare_wrong_destination"),
            Err(pp(PeerProtocolError::WrongDestination(
                CCP_CONTROL_DESTINATION
            )))
        );
        assert_eq!(
            control("prepare_wrong_condition"),
            Err(pp(PeerProtocolError::WrongCondition))
        );
        assert_eq!(
            control("prepare_expired"),
            Err(pp(PeerProtocolError::Expired))
        );
        assert_eq!(
            update("prepare_wrong_destination"),
            Err(pp(PeerProtocolError::WrongDestination(
                CCP_UPDATE_DESTINATION
            )))
        );
        assert_eq!(
            update("prepare_wrong_condition"),
            Err(pp(PeerProtocolError::WrongCondition))
        );
        assert_eq!(
            update("prepare_expired"),
            Err(pp(PeerProtocolError::Expired))
        );
        // a control request sent to the update address
        let (_, req) = control_vector();
        let p = peer_request(CCP_UPDATE_DESTINATION, EXPIRY, &req.encode()).unwrap();
        assert_eq!(
            RouteUpdateRequest::from_prepare(&p, NOW),
            Err(CcpError::Oer(OerError::UnexpectedEnd))
        );
    }

    pub(crate) fn arb_table_id() -> impl Strategy<Value = RoutingTableId> {
        any::<[u8; 16]>().prop_map(RoutingTableId)
    }

    fn arb_prop() -> impl Strategy<Value = RouteProp> {
        let flags = prop_oneof![
            Just((false, true, false)),
            Just((true, false, false)),
            Just((true, true, false)),
            Just((true, true, true)),
        ];
        let value = prop_oneof![
            "\\PC{0,12}".prop_map(RoutePropValue::Utf8),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(RoutePropValue::Bytes),
        ];
        (flags, any::<u16>(), value).prop_map(|((o, t, p), id, value)| RouteProp {
            is_optional: o,
            is_transitive: t,
            is_partial: p,
            id,
            value,
        })
    }

    fn arb_route() -> impl Strategy<Value = Route> {
        (
            "[a-z.]{0,20}",
            proptest::collection::vec("[a-z.]{1,12}", 0..4),
            any::<[u8; 32]>(),
            proptest::collection::vec(arb_prop(), 0..3),
        )
            .prop_map(|(prefix, path, auth, props)| Route {
                prefix,
                path,
                auth,
                props,
            })
    }

    proptest! {
        #[test]
        fn route_control_round_trip(
            sync: bool,
            id in arb_table_id(),
            epoch: u32,
            features in proptest::collection::vec("\\PC{0,10}", 0..4),
        ) {
            let req = RouteControlRequest {
                mode: if sync { Mode::Sync } else { Mode::Idle },
                last_known_routing_table_id: id,
                last_known_epoch: epoch,
                features,
            };
            prop_assert_eq!(RouteControlRequest::decode(&req.encode()), Ok(req));
        }

        #[test]
        fn route_update_round_trip(
            id in arb_table_id(),
            epochs: (u32, u32, u32, u32),
            speaker in crate::ildcp::tests::arb_address(),
            new_routes in proptest::collection::vec(arb_route(), 0..4),
            withdrawn_routes in proptest::collection::vec("[a-z.]{1,16}", 0..4),
        ) {
            let req = RouteUpdateRequest {
                routing_table_id: id,
                current_epoch_index: epochs.0,
                from_epoch_index: epochs.1,
                to_epoch_index: epochs.2,
                hold_down_time: epochs.3,
                speaker,
                new_routes,
                withdrawn_routes,
            };
            prop_assert_eq!(RouteUpdateRequest::decode(&req.encode()), Ok(req));
        }

        #[test]
        fn route_control_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(req) = RouteControlRequest::decode(&data) {
                prop_assert_eq!(req.encode(), data);
            }
        }

        #[test]
        fn route_update_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(req) = RouteUpdateRequest::decode(&data) {
                prop_assert_eq!(req.encode(), data);
            }
        }

        #[test]
        fn route_update_mutations_never_panic(at: prop::sample::Index, byte: u8) {
            let (mut bytes, _) = complex_update_vector();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(req) = RouteUpdateRequest::decode(&bytes) {
                prop_assert_eq!(req.encode(), bytes);
            }
        }
    }
}
