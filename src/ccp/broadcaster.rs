//! Route selection and the CCP driver for all peers: picks the best route per prefix from
//! static, local and learned routes, keeps the local routing table (what we forward on) and the
//! forwarding routing table (what we advertise) in step, and runs one [`CcpSender`] and one
//! [`CcpReceiver`] per peer.
//!
//! Sans-IO: every entry point takes `now` (unix ms) where time matters and returns
//! [`CcpAction`]s: requests to send and route changes for the packet router to apply.
//!
//! Selection follows the JS connector: a static (configured) route wins, then a local route
//! (our own address, children, the default route), then the learned route with the best
//! relation (child > peer > parent), then the shortest path, then the lowest peer id.

use super::messages::{RouteControlRequest, RouteUpdateRequest, RoutingTableId};
use super::receiver::{CcpReceiver, ImportFilter, ReceiverOutcome, DEFAULT_MAX_ROUTES_PER_PEER};
use super::sender::{CcpSender, SenderConfig};
use super::table::{ForwardingRoute, ForwardingTable};
use crate::packet::Address;
use crate::stream::crypto::{hmac_sha256, sha256};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// How an account relates to us; decides route preference and what we advertise to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    Parent,
    Peer,
    Child,
    /// Ourselves: the route to our own address.
    Local,
}

impl Relation {
    /// Higher is preferred: a customer's route beats a peer's, which beats a provider's.
    pub fn priority(self) -> u8 {
        match self {
            Relation::Parent => 0,
            Relation::Peer => 1,
            Relation::Child => 2,
            Relation::Local => 3,
        }
    }
}

/// `prefix` equals `parent` or lies under it segment-wise (`g.a.b` is under `g.a`, `g.ab` is not).
pub fn is_under(prefix: &str, parent: &str) -> bool {
    match prefix.strip_prefix(parent) {
        Some(rest) => rest.is_empty() || rest.starts_with('.'),
        None => false,
    }
}

/// Route authentication for routes we originate: HMAC-SHA256 keyed by the routing secret over
/// the prefix, as the JS connector computes it.
pub fn route_auth(routing_secret: &[u8], prefix: &str) -> [u8; 32] {
    hmac_sha256(routing_secret, prefix.as_bytes())
}

/// Auth we advertise for a route we relay: SHA-256 of the auth we selected, so the chain from
/// the originator's HMAC stays checkable by whoever holds the secret.
pub fn forwarded_auth(auth: &[u8; 32]) -> [u8; 32] {
    sha256(auth)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcasterConfig {
    /// `g` on the live network, `test` on testnets; only routes under it are accepted or sent.
    pub global_prefix: String,
    pub sender: SenderConfig,
    /// Grace period for a new peer's first update, and for each resync after expiry.
    pub initial_hold_down_ms: u64,
    pub route_control_retry_ms: u64,
    /// Most routes kept from one peer; further prefixes it announces are ignored.
    pub max_routes_per_peer: usize,
}

impl Default for BroadcasterConfig {
    fn default() -> Self {
        BroadcasterConfig {
            global_prefix: "g".to_owned(),
            sender: SenderConfig::default(),
            initial_hold_down_ms: 45_000,
            route_control_retry_ms: 30_000,
            max_routes_per_peer: DEFAULT_MAX_ROUTES_PER_PEER,
        }
    }
}

/// A change to the local routing table (what the packet router forwards on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange<P> {
    Set { prefix: String, next_hop: P },
    Removed { prefix: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CcpAction<P> {
    SendRouteControl {
        peer: P,
        request: RouteControlRequest,
    },
    SendRouteUpdate {
        peer: P,
        request: RouteUpdateRequest,
    },
    RouteChanged(RouteChange<P>),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BroadcastError {
    #[error("CCP message from an account that is not a CCP peer")]
    UnknownPeer,
    #[error("we are configured not to send routes to this peer")]
    SendRoutesDisabled,
    #[error("we are configured not to receive routes from this peer")]
    ReceiveRoutesDisabled,
}

/// The route chosen for a prefix in the local routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedRoute<P> {
    /// `None` for our own address.
    pub next_hop: Option<P>,
    pub relation: Relation,
    pub path: Vec<String>,
    pub auth: [u8; 32],
}

#[derive(Debug, Clone)]
struct PeerState<P> {
    relation: Relation,
    sender: Option<CcpSender<P>>,
    receiver: Option<CcpReceiver>,
}

#[derive(Debug, Clone)]
pub struct RouteBroadcaster<P> {
    own_address: Address,
    routing_secret: Vec<u8>,
    config: BroadcasterConfig,
    static_routes: BTreeMap<String, (P, Relation)>,
    local_routes: BTreeMap<String, (Option<P>, Relation)>,
    peers: BTreeMap<P, PeerState<P>>,
    local_table: BTreeMap<String, SelectedRoute<P>>,
    forwarding: ForwardingTable<P>,
}

impl<P: Clone + Ord> RouteBroadcaster<P> {
    /// `routing_table_id` should be fresh random bytes per start; `routing_secret` keys the
    /// auth of the routes we originate.
    pub fn new(
        own_address: Address,
        routing_secret: &[u8],
        routing_table_id: RoutingTableId,
        config: BroadcasterConfig,
    ) -> Self {
        let mut b = RouteBroadcaster {
            local_routes: BTreeMap::from([(
                own_address.as_str().to_owned(),
                (None, Relation::Local),
            )]),
            own_address,
            routing_secret: routing_secret.to_vec(),
            config,
            static_routes: BTreeMap::new(),
            peers: BTreeMap::new(),
            local_table: BTreeMap::new(),
            forwarding: ForwardingTable::new(routing_table_id),
        };
        let own = b.own_address.as_str().to_owned();
        let mut sink = Vec::new();
        b.update_prefix(&own, &mut sink);
        b
    }

    pub fn own_address(&self) -> &Address {
        &self.own_address
    }

    pub fn forwarding_table(&self) -> &ForwardingTable<P> {
        &self.forwarding
    }

    pub fn local_route(&self, prefix: &str) -> Option<&SelectedRoute<P>> {
        self.local_table.get(prefix)
    }

    pub fn local_routes(&self) -> impl Iterator<Item = (&str, &SelectedRoute<P>)> {
        self.local_table.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn sender(&self, peer: &P) -> Option<&CcpSender<P>> {
        self.peers.get(peer).and_then(|p| p.sender.as_ref())
    }

    pub fn receiver(&self, peer: &P) -> Option<&CcpReceiver> {
        self.peers.get(peer).and_then(|p| p.receiver.as_ref())
    }

    /// A link to `peer` came up. A known peer is asked for its routes again (it may have missed
    /// updates while disconnected); a new one gets a sender and/or receiver.
    pub fn add_peer(
        &mut self,
        peer: P,
        relation: Relation,
        send_routes: bool,
        receive_routes: bool,
        now: u64,
    ) -> Vec<CcpAction<P>> {
        if let Some(state) = self.peers.get_mut(&peer) {
            return state
                .receiver
                .as_mut()
                .map(|r| {
                    // A new connection: whatever the peer refused before, it may accept now.
                    r.reset_route_control_backoff();
                    CcpAction::SendRouteControl {
                        peer: peer.clone(),
                        request: r.route_control_request(),
                    }
                })
                .into_iter()
                .collect();
        }
        let sender =
            send_routes.then(|| CcpSender::new(peer.clone(), relation, self.config.sender.clone()));
        let receiver = receive_routes.then(|| {
            CcpReceiver::new(
                now,
                self.config.initial_hold_down_ms,
                self.config.route_control_retry_ms,
            )
            .with_max_routes(self.config.max_routes_per_peer)
        });
        let actions = receiver
            .as_ref()
            .map(|r| CcpAction::SendRouteControl {
                peer: peer.clone(),
                request: r.route_control_request(),
            })
            .into_iter()
            .collect();
        self.peers.insert(
            peer,
            PeerState {
                relation,
                sender,
                receiver,
            },
        );
        actions
    }

    /// The link to `peer` went down or the account was removed: its routes go with it.
    pub fn remove_peer(&mut self, peer: &P) -> Vec<CcpAction<P>> {
        let mut actions = Vec::new();
        if let Some(state) = self.peers.remove(peer) {
            if let Some(receiver) = state.receiver {
                for prefix in receiver.prefixes() {
                    self.update_prefix(prefix, &mut actions);
                }
            }
        }
        actions
    }

    /// Adds or replaces a local route (a child's address, the default route to a parent).
    pub fn set_local_route(
        &mut self,
        prefix: &str,
        next_hop: P,
        relation: Relation,
    ) -> Vec<CcpAction<P>> {
        self.local_routes
            .insert(prefix.to_owned(), (Some(next_hop), relation));
        let mut actions = Vec::new();
        self.update_prefix(prefix, &mut actions);
        actions
    }

    /// Removes a local route; our own address's route cannot be removed.
    pub fn remove_local_route(&mut self, prefix: &str) -> Vec<CcpAction<P>> {
        let mut actions = Vec::new();
        if prefix != self.own_address.as_str() && self.local_routes.remove(prefix).is_some() {
            self.update_prefix(prefix, &mut actions);
        }
        actions
    }

    /// Adds or replaces a configured route; it beats every other route for the same prefix.
    pub fn set_static_route(
        &mut self,
        prefix: &str,
        next_hop: P,
        relation: Relation,
    ) -> Vec<CcpAction<P>> {
        self.static_routes
            .insert(prefix.to_owned(), (next_hop, relation));
        let mut actions = Vec::new();
        self.update_prefix(prefix, &mut actions);
        actions
    }

    pub fn remove_static_route(&mut self, prefix: &str) -> Vec<CcpAction<P>> {
        let mut actions = Vec::new();
        if self.static_routes.remove(prefix).is_some() {
            self.update_prefix(prefix, &mut actions);
        }
        actions
    }

    pub fn handle_route_control(
        &mut self,
        peer: &P,
        req: &RouteControlRequest,
    ) -> Result<(), BroadcastError> {
        let state = self
            .peers
            .get_mut(peer)
            .ok_or(BroadcastError::UnknownPeer)?;
        let sender = state
            .sender
            .as_mut()
            .ok_or(BroadcastError::SendRoutesDisabled)?;
        sender.handle_route_control(req, &self.forwarding);
        Ok(())
    }

    pub fn handle_route_update(
        &mut self,
        peer: &P,
        now: u64,
        update: &RouteUpdateRequest,
    ) -> Result<Vec<CcpAction<P>>, BroadcastError> {
        let state = self
            .peers
            .get_mut(peer)
            .ok_or(BroadcastError::UnknownPeer)?;
        let receiver = state
            .receiver
            .as_mut()
            .ok_or(BroadcastError::ReceiveRoutesDisabled)?;
        let filter = ImportFilter {
            own_address: &self.own_address,
            global_prefix: &self.config.global_prefix,
        };
        let outcome = receiver.handle_route_update(now, update, filter);
        let mut actions = Vec::new();
        self.apply_receiver_outcome(peer, outcome, &mut actions);
        Ok(actions)
    }

    pub fn route_update_acknowledged(&mut self, peer: &P) {
        if let Some(s) = self.peers.get_mut(peer).and_then(|p| p.sender.as_mut()) {
            s.update_acknowledged();
        }
    }

    pub fn route_update_failed(&mut self, peer: &P) {
        if let Some(s) = self.peers.get_mut(peer).and_then(|p| p.sender.as_mut()) {
            s.update_failed();
        }
    }

    pub fn route_control_acknowledged(&mut self, peer: &P) {
        if let Some(r) = self.peers.get_mut(peer).and_then(|p| p.receiver.as_mut()) {
            r.route_control_acknowledged();
        }
    }

    pub fn route_control_failed(&mut self, peer: &P, now: u64) {
        if let Some(r) = self.peers.get_mut(peer).and_then(|p| p.receiver.as_mut()) {
            r.route_control_failed(now);
        }
    }

    /// `peer` refused our route control request: the next one waits longer
    /// ([`CcpReceiver::route_control_refused`]). How many refusals in a row this makes; `None`
    /// when we do not receive routes from `peer`.
    pub fn route_control_refused(&mut self, peer: &P, now: u64) -> Option<u32> {
        self.peers
            .get_mut(peer)
            .and_then(|p| p.receiver.as_mut())
            .map(|r| r.route_control_refused(now))
    }

    /// Earliest time [`RouteBroadcaster::poll`] has work.
    pub fn next_timeout(&self) -> Option<u64> {
        let epoch = self.forwarding.current_epoch();
        self.peers
            .values()
            .flat_map(|p| {
                [
                    p.sender.as_ref().and_then(|s| s.next_timeout(epoch)),
                    p.receiver.as_ref().map(CcpReceiver::next_timeout),
                ]
            })
            .flatten()
            .min()
    }

    /// Expires silent peers, retries route control, and emits the route updates that are due.
    pub fn poll(&mut self, now: u64) -> Vec<CcpAction<P>> {
        let mut actions = Vec::new();
        let peers: Vec<P> = self.peers.keys().cloned().collect();
        for peer in &peers {
            let outcome = self
                .peers
                .get_mut(peer)
                .and_then(|p| p.receiver.as_mut())
                .map(|r| r.poll(now));
            if let Some(outcome) = outcome {
                self.apply_receiver_outcome(peer, outcome, &mut actions);
            }
        }
        // Senders run after receivers so updates already carry this poll's route changes.
        for (peer, state) in &mut self.peers {
            if let Some(sender) = state.sender.as_mut() {
                if let Some(request) = sender.poll(now, &self.forwarding, &self.own_address) {
                    actions.push(CcpAction::SendRouteUpdate {
                        peer: peer.clone(),
                        request,
                    });
                }
            }
        }
        actions
    }

    fn apply_receiver_outcome(
        &mut self,
        peer: &P,
        outcome: ReceiverOutcome,
        actions: &mut Vec<CcpAction<P>>,
    ) {
        for prefix in &outcome.changed_prefixes {
            self.update_prefix(prefix, actions);
        }
        if let Some(request) = outcome.route_control {
            actions.push(CcpAction::SendRouteControl {
                peer: peer.clone(),
                request,
            });
        }
    }

    fn best_route(&self, prefix: &str) -> Option<SelectedRoute<P>> {
        let originated = |next_hop: Option<P>, relation| SelectedRoute {
            next_hop,
            relation,
            path: Vec::new(),
            auth: route_auth(&self.routing_secret, prefix),
        };
        if let Some((hop, relation)) = self.static_routes.get(prefix) {
            return Some(originated(Some(hop.clone()), *relation));
        }
        if let Some((hop, relation)) = self.local_routes.get(prefix) {
            return Some(originated(hop.clone(), *relation));
        }
        self.peers
            .iter()
            .filter_map(|(peer, state)| {
                let route = state.receiver.as_ref()?.get(prefix)?;
                Some((peer, state.relation, route))
            })
            .min_by(|a, b| {
                b.1.priority()
                    .cmp(&a.1.priority())
                    .then(a.2.path.len().cmp(&b.2.path.len()))
                    .then(a.0.cmp(b.0))
            })
            .map(|(peer, relation, route)| SelectedRoute {
                next_hop: Some(peer.clone()),
                relation,
                path: route.path.clone(),
                auth: route.auth,
            })
    }

    /// Re-runs selection for `prefix` and propagates a change to both tables.
    fn update_prefix(&mut self, prefix: &str, actions: &mut Vec<CcpAction<P>>) {
        let best = self.best_route(prefix);
        let current = self.local_table.get(prefix);
        if current == best.as_ref() {
            return;
        }
        let old_hop = current.and_then(|r| r.next_hop.clone());
        let new_hop = best.as_ref().and_then(|r| r.next_hop.clone());
        if old_hop != new_hop {
            actions.push(CcpAction::RouteChanged(match &new_hop {
                Some(hop) => RouteChange::Set {
                    prefix: prefix.to_owned(),
                    next_hop: hop.clone(),
                },
                None => RouteChange::Removed {
                    prefix: prefix.to_owned(),
                },
            }));
        }
        match &best {
            Some(route) => self.local_table.insert(prefix.to_owned(), route.clone()),
            None => self.local_table.remove(prefix),
        };
        self.update_forwarding(prefix, best);
    }

    /// What we advertise for `prefix`: the selected route with us prepended to the path,
    /// unless it is outside the global prefix, the default route itself, or a route to one of
    /// our own children (reachable through the route to our own address already).
    fn update_forwarding(&mut self, prefix: &str, selected: Option<SelectedRoute<P>>) {
        let global = self.config.global_prefix.as_str();
        let own = self.own_address.as_str();
        let route = selected
            .map(|r| {
                let mut path = Vec::with_capacity(r.path.len() + 1);
                path.push(own.to_owned());
                path.extend(r.path);
                ForwardingRoute {
                    next_hop: r.next_hop,
                    relation: r.relation,
                    path,
                    auth: forwarded_auth(&r.auth),
                }
            })
            .filter(|r| {
                is_under(prefix, global)
                    && prefix != global
                    && !(prefix != own && is_under(prefix, own) && r.path.len() == 1)
            });
        self.forwarding.set(prefix, route);
    }

    /// All prefixes some source currently offers a route for.
    pub fn known_prefixes(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self.static_routes.keys().cloned().collect();
        out.extend(self.local_routes.keys().cloned());
        for state in self.peers.values() {
            if let Some(r) = &state.receiver {
                out.extend(r.prefixes().map(str::to_owned));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccp::messages::{Mode, Route};

    const OURS: RoutingTableId = RoutingTableId([0xaa; 16]);
    const THEIRS: RoutingTableId = RoutingTableId([0xbb; 16]);
    const SECRET: &[u8] = b"routing secret";

    fn broadcaster() -> RouteBroadcaster<String> {
        RouteBroadcaster::new(
            Address::try_from("g.me").unwrap(),
            SECRET,
            OURS,
            BroadcasterConfig::default(),
        )
    }

    fn route(prefix: &str, path: &[&str]) -> Route {
        Route {
            prefix: prefix.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            auth: [9; 32],
            props: vec![],
        }
    }

    fn update(from: u32, to: u32, new: Vec<Route>, gone: &[&str]) -> RouteUpdateRequest {
        RouteUpdateRequest {
            routing_table_id: THEIRS,
            current_epoch_index: to,
            from_epoch_index: from,
            to_epoch_index: to,
            hold_down_time: 45_000,
            speaker: Address::try_from("g.peer").unwrap(),
            new_routes: new,
            withdrawn_routes: gone.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn changes(actions: &[CcpAction<String>]) -> Vec<RouteChange<String>> {
        actions
            .iter()
            .filter_map(|a| match a {
                CcpAction::RouteChanged(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    fn set(prefix: &str, hop: &str) -> RouteChange<String> {
        RouteChange::Set {
            prefix: prefix.into(),
            next_hop: hop.into(),
        }
    }

    fn hop(b: &RouteBroadcaster<String>, prefix: &str) -> Option<String> {
        b.local_route(prefix).and_then(|r| r.next_hop.clone())
    }

    #[test]
    fn is_under_is_segment_aware() {
        assert!(is_under("g.a.b", "g.a"));
        assert!(is_under("g.a", "g.a"));
        assert!(!is_under("g.ab", "g.a"));
        assert!(!is_under("g", "g.a"));
        assert!(is_under("g.a", "g"));
    }

    #[test]
    fn relation_priorities() {
        assert!(Relation::Child.priority() > Relation::Peer.priority());
        assert!(Relation::Peer.priority() > Relation::Parent.priority());
        assert!(Relation::Local.priority() > Relation::Child.priority());
    }

    #[test]
    fn route_auth_is_hmac_sha256_of_prefix() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            hex::encode(route_auth(b"Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            forwarded_auth(&[0; 32]),
            crate::peer_protocol::PEER_PROTOCOL_CONDITION,
            "SHA-256 of 32 zero bytes"
        );
    }

    #[test]
    fn own_address_is_advertised_from_epoch_zero() {
        let b = broadcaster();
        let own = b.local_route("g.me").unwrap();
        assert_eq!(own.next_hop, None);
        let fwd = b.forwarding_table().get("g.me").unwrap();
        assert_eq!(fwd.path, vec!["g.me"]);
        assert_eq!(fwd.auth, forwarded_auth(&route_auth(SECRET, "g.me")));
        assert_eq!(b.forwarding_table().current_epoch(), 1);
    }

    #[test]
    fn new_peer_gets_route_control_and_updates() {
        let mut b = broadcaster();
        let actions = b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        assert_eq!(
            actions,
            vec![CcpAction::SendRouteControl {
                peer: "bob".into(),
                request: RouteControlRequest {
                    mode: Mode::Sync,
                    last_known_routing_table_id: RoutingTableId::default(),
                    last_known_epoch: 0,
                    features: vec![],
                },
            }]
        );
        // no updates until bob asks for them
        assert!(b.poll(0).is_empty());
        b.handle_route_control(
            &"bob".to_string(),
            &RouteControlRequest {
                mode: Mode::Sync,
                last_known_routing_table_id: RoutingTableId::default(),
                last_known_epoch: 0,
                features: vec![],
            },
        )
        .unwrap();
        let actions = b.poll(0);
        let [CcpAction::SendRouteUpdate { peer, request }] = &actions[..] else {
            panic!("expected one update, got {actions:?}");
        };
        assert_eq!(peer, "bob");
        assert_eq!(request.routing_table_id, OURS);
        assert_eq!(request.new_routes.len(), 1);
        assert_eq!(request.new_routes[0].prefix, "g.me");
    }

    #[test]
    fn re_adding_a_known_peer_resends_route_control() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        let actions = b.add_peer("bob".into(), Relation::Peer, true, true, 5);
        assert!(matches!(&actions[..], [CcpAction::SendRouteControl { .. }]));
        b.add_peer("alice".into(), Relation::Peer, true, false, 0);
        assert!(b
            .add_peer("alice".into(), Relation::Peer, true, false, 0)
            .is_empty());
    }

    #[test]
    fn learned_route_is_selected_and_advertised() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        let actions = b
            .handle_route_update(
                &"bob".into(),
                0,
                &update(0, 1, vec![route("g.x", &["g.bob", "g.x"])], &[]),
            )
            .unwrap();
        assert_eq!(changes(&actions), vec![set("g.x", "bob")]);
        let fwd = b.forwarding_table().get("g.x").unwrap();
        assert_eq!(fwd.path, vec!["g.me", "g.bob", "g.x"]);
        assert_eq!(fwd.auth, forwarded_auth(&[9; 32]));
        assert_eq!(b.forwarding_table().current_epoch(), 2);
    }

    #[test]
    fn shorter_path_wins_then_peer_id_breaks_ties() {
        let mut b = broadcaster();
        for p in ["carl", "bob", "dave"] {
            b.add_peer(p.into(), Relation::Peer, true, true, 0);
        }
        b.handle_route_update(
            &"carl".into(),
            0,
            &update(0, 1, vec![route("g.x", &["g.carl", "g.x"])], &[]),
        )
        .unwrap();
        assert_eq!(hop(&b, "g.x").as_deref(), Some("carl"));
        let a = b
            .handle_route_update(
                &"dave".into(),
                0,
                &update(0, 1, vec![route("g.x", &["g.dave", "g.y", "g.x"])], &[]),
            )
            .unwrap();
        assert!(changes(&a).is_empty(), "longer path loses");
        let a = b
            .handle_route_update(
                &"bob".into(),
                0,
                &update(0, 1, vec![route("g.x", &["g.bob", "g.x"])], &[]),
            )
            .unwrap();
        assert_eq!(
            changes(&a),
            vec![set("g.x", "bob")],
            "equal path: lower id wins"
        );
        let a = b
            .handle_route_update(&"bob".into(), 0, &update(1, 2, vec![], &["g.x"]))
            .unwrap();
        assert_eq!(changes(&a), vec![set("g.x", "carl")]);
    }

    #[test]
    fn better_relation_beats_shorter_path() {
        let mut b = broadcaster();
        b.add_peer("kid".into(), Relation::Child, true, true, 0);
        b.add_peer("mom".into(), Relation::Parent, true, true, 0);
        b.handle_route_update(
            &"mom".into(),
            0,
            &update(0, 1, vec![route("g.x", &["g.mom"])], &[]),
        )
        .unwrap();
        b.handle_route_update(
            &"kid".into(),
            0,
            &update(0, 1, vec![route("g.x", &["g.kid", "g.a", "g.x"])], &[]),
        )
        .unwrap();
        assert_eq!(hop(&b, "g.x").as_deref(), Some("kid"));
    }

    #[test]
    fn static_and_local_routes_beat_learned() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        b.handle_route_update(
            &"bob".into(),
            0,
            &update(
                0,
                1,
                vec![route("g.x", &["g.bob"]), route("g.y", &["g.bob"])],
                &[],
            ),
        )
        .unwrap();
        let a = b.set_static_route("g.x", "carl".into(), Relation::Peer);
        assert_eq!(changes(&a), vec![set("g.x", "carl")]);
        assert_eq!(
            b.local_route("g.x").unwrap().auth,
            route_auth(SECRET, "g.x")
        );
        let a = b.set_local_route("g.y", "kid".into(), Relation::Child);
        assert_eq!(changes(&a), vec![set("g.y", "kid")]);
        // static beats local for the same prefix
        b.set_local_route("g.x", "kid".into(), Relation::Child);
        assert_eq!(hop(&b, "g.x").as_deref(), Some("carl"));
        let a = b.remove_static_route("g.x");
        assert_eq!(changes(&a), vec![set("g.x", "kid")]);
        let a = b.remove_local_route("g.x");
        assert_eq!(changes(&a), vec![set("g.x", "bob")]);
        assert!(b.remove_local_route("g.me").is_empty());
        assert!(b.local_route("g.me").is_some());
    }

    #[test]
    fn withdrawal_without_alternative_removes_route() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        b.handle_route_update(
            &"bob".into(),
            0,
            &update(0, 1, vec![route("g.x", &["g.bob"])], &[]),
        )
        .unwrap();
        let a = b
            .handle_route_update(&"bob".into(), 0, &update(1, 2, vec![], &["g.x"]))
            .unwrap();
        assert_eq!(
            changes(&a),
            vec![RouteChange::Removed {
                prefix: "g.x".into()
            }]
        );
        assert!(b.forwarding_table().get("g.x").is_none());
        assert_eq!(b.forwarding_table().current_epoch(), 3);
    }

    #[test]
    fn looping_route_is_ignored() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        let a = b
            .handle_route_update(
                &"bob".into(),
                0,
                &update(0, 1, vec![route("g.x", &["g.bob", "g.me", "g.x"])], &[]),
            )
            .unwrap();
        assert!(changes(&a).is_empty());
        assert!(b.local_route("g.x").is_none());
    }

    #[test]
    fn child_routes_are_not_advertised_and_default_route_is_not_advertised() {
        let mut b = broadcaster();
        b.set_local_route("g.me.kid", "kid".into(), Relation::Child);
        b.set_local_route("g", "mom".into(), Relation::Parent);
        assert_eq!(hop(&b, "g.me.kid").as_deref(), Some("kid"));
        assert_eq!(hop(&b, "g").as_deref(), Some("mom"));
        assert!(b.forwarding_table().get("g.me.kid").is_none());
        assert!(b.forwarding_table().get("g").is_none());
        // a child's own (non-nested) prefix is advertised
        b.set_local_route("g.elsewhere", "kid".into(), Relation::Child);
        assert!(b.forwarding_table().get("g.elsewhere").is_some());
        // routes outside the global prefix are used locally but never advertised
        b.set_static_route("test.x", "bob".into(), Relation::Peer);
        assert!(b.forwarding_table().get("test.x").is_none());
        assert_eq!(hop(&b, "test.x").as_deref(), Some("bob"));
    }

    #[test]
    fn removing_a_peer_falls_back_or_removes() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        b.add_peer("carl".into(), Relation::Peer, true, true, 0);
        b.handle_route_update(
            &"bob".into(),
            0,
            &update(
                0,
                1,
                vec![route("g.x", &["g.bob"]), route("g.y", &["g.bob"])],
                &[],
            ),
        )
        .unwrap();
        b.handle_route_update(
            &"carl".into(),
            0,
            &update(0, 1, vec![route("g.x", &["g.carl", "g.z"])], &[]),
        )
        .unwrap();
        let a = b.remove_peer(&"bob".into());
        assert_eq!(
            changes(&a),
            vec![
                set("g.x", "carl"),
                RouteChange::Removed {
                    prefix: "g.y".into()
                }
            ]
        );
        assert!(b.remove_peer(&"bob".into()).is_empty());
        assert!(b.sender(&"bob".into()).is_none());
    }

    #[test]
    fn silent_peer_expires() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, false, true, 0);
        b.handle_route_update(
            &"bob".into(),
            1_000,
            &update(0, 1, vec![route("g.x", &["g.bob"])], &[]),
        )
        .unwrap();
        assert_eq!(b.next_timeout(), Some(46_000));
        assert!(b.poll(45_999).is_empty());
        let a = b.poll(46_000);
        assert_eq!(
            changes(&a),
            vec![RouteChange::Removed {
                prefix: "g.x".into()
            }]
        );
        assert!(a
            .iter()
            .any(|x| matches!(x, CcpAction::SendRouteControl { peer, .. } if peer == "bob")));
    }

    #[test]
    fn gap_triggers_route_control() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, false, true, 0);
        let a = b
            .handle_route_update(&"bob".into(), 0, &update(3, 4, vec![], &[]))
            .unwrap();
        assert_eq!(
            a,
            vec![CcpAction::SendRouteControl {
                peer: "bob".into(),
                request: RouteControlRequest {
                    mode: Mode::Sync,
                    last_known_routing_table_id: THEIRS,
                    last_known_epoch: 0,
                    features: vec![],
                },
            }]
        );
    }

    #[test]
    fn route_control_retry_after_failure() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, false, true, 0);
        b.route_control_failed(&"bob".into(), 100);
        assert_eq!(b.next_timeout(), Some(30_100));
        let a = b.poll(30_100);
        assert!(matches!(&a[..], [CcpAction::SendRouteControl { .. }]));
        b.route_control_acknowledged(&"bob".into());
    }

    #[test]
    fn messages_from_strangers_or_disabled_directions_are_refused() {
        let mut b = broadcaster();
        let ctl = RouteControlRequest {
            mode: Mode::Sync,
            last_known_routing_table_id: OURS,
            last_known_epoch: 0,
            features: vec![],
        };
        assert_eq!(
            b.handle_route_control(&"eve".into(), &ctl),
            Err(BroadcastError::UnknownPeer)
        );
        assert_eq!(
            b.handle_route_update(&"eve".into(), 0, &update(0, 0, vec![], &[])),
            Err(BroadcastError::UnknownPeer)
        );
        b.add_peer("kid".into(), Relation::Child, false, false, 0);
        assert_eq!(
            b.handle_route_control(&"kid".into(), &ctl),
            Err(BroadcastError::SendRoutesDisabled)
        );
        assert_eq!(
            b.handle_route_update(&"kid".into(), 0, &update(0, 0, vec![], &[])),
            Err(BroadcastError::ReceiveRoutesDisabled)
        );
    }

    #[test]
    fn route_changes_reach_senders_and_failures_roll_back() {
        let mut b = broadcaster();
        b.add_peer("bob".into(), Relation::Peer, true, true, 0);
        b.add_peer("carl".into(), Relation::Peer, true, false, 0);
        let ctl = RouteControlRequest {
            mode: Mode::Sync,
            last_known_routing_table_id: OURS,
            last_known_epoch: 1,
            features: vec![],
        };
        b.handle_route_control(&"carl".into(), &ctl).unwrap();
        // carl is up to date: first poll is a heartbeat
        let a = b.poll(0);
        assert!(
            matches!(&a[..], [CcpAction::SendRouteUpdate { request, .. }] if request.new_routes.is_empty())
        );
        b.route_update_acknowledged(&"carl".into());
        b.handle_route_update(
            &"bob".into(),
            10,
            &update(0, 1, vec![route("g.x", &["g.bob"])], &[]),
        )
        .unwrap();
        // carl is now behind, so the next update is due after the minimum interval
        assert_eq!(b.next_timeout(), Some(150));
        let a = b.poll(150);
        let [CcpAction::SendRouteUpdate { peer, request }] = &a[..] else {
            panic!("expected one update, got {a:?}");
        };
        assert_eq!(peer, "carl");
        assert_eq!((request.from_epoch_index, request.to_epoch_index), (1, 2));
        assert_eq!(request.new_routes[0].path, vec!["g.me", "g.bob"]);
        b.route_update_failed(&"carl".into());
        assert_eq!(b.sender(&"carl".into()).unwrap().last_known_epoch(), 1);
        assert!(b.receiver(&"carl".into()).is_none());
        assert!(b.known_prefixes().contains("g.x"));
    }
}
