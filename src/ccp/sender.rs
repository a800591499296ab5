//! The sending half of CCP towards one peer: remembers the mode and epoch the peer asked for in
//! its last route control request and turns the forwarding table's log into route update
//! requests, batched, with heartbeats when nothing changed.
//!
//! Sans-IO: [`CcpSender::poll`] takes `now` (unix ms) and returns the request to send, if one
//! is due; the caller reports the outcome with [`CcpSender::update_acknowledged`] or
//! [`CcpSender::update_failed`].

use super::broadcaster::Relation;
use super::messages::{Mode, Route, RouteControlRequest, RouteUpdateRequest, RoutingTableId};
use super::table::{ForwardingRoute, ForwardingTable};
use crate::oer::{var_octet_string_size, var_uint_size};
use crate::packet::{Address, MAX_DATA_LEN};

/// Bytes of a route update besides its routes: table id, four u32s, two counts (at most nine
/// bytes each); the speaker is added separately.
const UPDATE_OVERHEAD: usize = 16 + 16 + 9 + 9;

/// Bytes left for routes and withdrawals in one update that `own_address` speaks.
pub(crate) fn update_budget(own_address: &Address) -> usize {
    MAX_DATA_LEN.saturating_sub(UPDATE_OVERHEAD + var_octet_string_size(own_address.len()))
}

/// Bytes a route without properties takes in an update.
pub(crate) fn route_size<'a>(prefix: &str, path: impl Iterator<Item = &'a str>) -> usize {
    let (count, hops) = path.fold((0usize, 0usize), |(n, bytes), h| {
        (n + 1, bytes.saturating_add(var_octet_string_size(h.len())))
    });
    var_octet_string_size(prefix.len())
        .saturating_add(var_uint_size(count as u64))
        .saturating_add(hops)
        .saturating_add(32 + var_uint_size(0))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// Time between updates when the peer is up to date (heartbeats); also how long an update
    /// may stay unanswered before it counts as failed.
    pub route_broadcast_interval_ms: u64,
    /// Hold-down time advertised in every update: how long the peer may keep our routes.
    pub route_expiry_ms: u32,
    /// Most epochs covered by one update, so a peer far behind catches up in bounded messages.
    pub max_epochs_per_update: u32,
    /// Shortest gap between two updates to the same peer, even when it is behind.
    pub min_update_interval_ms: u64,
}

impl Default for SenderConfig {
    /// The JS connector's defaults.
    fn default() -> Self {
        SenderConfig {
            route_broadcast_interval_ms: 30_000,
            route_expiry_ms: 45_000,
            max_epochs_per_update: 50,
            min_update_interval_ms: 150,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    previous_epoch: u32,
    sent_at: u64,
}

#[derive(Debug, Clone)]
pub struct CcpSender<P> {
    peer: P,
    peer_relation: Relation,
    config: SenderConfig,
    mode: Mode,
    /// The routing table `last_known_epoch` counts in; when the table compacts under a new id
    /// the peer starts again from epoch 0.
    table_id: RoutingTableId,
    /// Next epoch the peer needs from us.
    last_known_epoch: u32,
    last_update: Option<u64>,
    in_flight: Option<InFlight>,
}

impl<P: Clone + PartialEq> CcpSender<P> {
    /// Starts idle: nothing is sent until the peer asks for sync mode.
    pub fn new(peer: P, peer_relation: Relation, config: SenderConfig) -> Self {
        CcpSender {
            peer,
            peer_relation,
            config,
            mode: Mode::Idle,
            table_id: RoutingTableId::default(),
            last_known_epoch: 0,
            last_update: None,
            in_flight: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn last_known_epoch(&self) -> u32 {
        self.last_known_epoch
    }

    pub fn is_update_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Applies the peer's route control request. A routing table id other than ours means the
    /// peer's epoch refers to a table we no longer have (we restarted), and an epoch beyond ours
    /// cannot be trusted either: both restart the peer from epoch 0.
    pub fn handle_route_control(&mut self, req: &RouteControlRequest, table: &ForwardingTable<P>) {
        self.mode = req.mode;
        self.table_id = table.routing_table_id();
        self.last_known_epoch = if req.last_known_routing_table_id != table.routing_table_id()
            || req.last_known_epoch > table.current_epoch()
        {
            0
        } else {
            req.last_known_epoch
        };
        // An answer to an update sent before this request no longer says anything about what
        // the peer knows.
        self.in_flight = None;
    }

    /// Forgets the peer's state, e.g. when its link goes down; it must send route control again.
    pub fn reset(&mut self) {
        self.mode = Mode::Idle;
        self.last_known_epoch = 0;
        self.in_flight = None;
    }

    /// When [`CcpSender::poll`] next has something to do: `None` while idle.
    pub fn next_timeout(&self, current_epoch: u32) -> Option<u64> {
        if self.mode != Mode::Sync {
            return None;
        }
        if let Some(f) = self.in_flight {
            return Some(
                f.sent_at
                    .saturating_add(self.config.route_broadcast_interval_ms),
            );
        }
        let last = match self.last_update {
            None => return Some(0),
            Some(t) => t,
        };
        let delay = if self.last_known_epoch < current_epoch {
            self.config.min_update_interval_ms
        } else {
            self.config
                .route_broadcast_interval_ms
                .max(self.config.min_update_interval_ms)
        };
        Some(last.saturating_add(delay))
    }

    /// Returns the route update to send now, if one is due. Optimistically assumes the peer
    /// will accept it (as the JS connector does); [`CcpSender::update_failed`] rolls back.
    pub fn poll(
        &mut self,
        now: u64,
        table: &ForwardingTable<P>,
        own_address: &Address,
    ) -> Option<RouteUpdateRequest> {
        if self.mode != Mode::Sync {
            return None;
        }
        if self.table_id != table.routing_table_id() {
            // The table compacted: what the peer knows (and any answer to an update in flight)
            // refers to the old one, so it gets the new table from scratch, now.
            self.table_id = table.routing_table_id();
            self.last_known_epoch = 0;
            self.in_flight = None;
            self.last_update = None;
        }
        if let Some(f) = self.in_flight {
            if now
                < f.sent_at
                    .saturating_add(self.config.route_broadcast_interval_ms)
            {
                return None;
            }
            self.update_failed();
        }
        if self
            .next_timeout(table.current_epoch())
            .is_some_and(|t| now < t)
        {
            return None;
        }

        let from = self.last_known_epoch;
        let (mut to, entries) = table.entries_since(from, self.config.max_epochs_per_update);
        // Stop at an epoch boundary before the data would outgrow an ILP packet; the rest goes
        // in the next update. A route too big for any update is withdrawn instead (the peer
        // must not keep an older route for the prefix), so no entry can stall the sync.
        let budget = update_budget(own_address);
        let mut used = 0usize;
        let mut new_routes = Vec::new();
        let mut withdrawn_routes = Vec::new();
        for entry in entries {
            let withdrawal_size = var_octet_string_size(entry.prefix.len());
            let exported = entry
                .route
                .as_ref()
                .filter(|r| self.exports(r))
                .map(|r| {
                    (
                        r,
                        route_size(&entry.prefix, r.path.iter().map(String::as_str)),
                    )
                })
                .filter(|(_, size)| *size <= budget);
            let size = exported.map_or(withdrawal_size, |(_, size)| size);
            if size > budget {
                // Not even the prefix fits: nothing about it can ever be sent.
                continue;
            }
            if used.saturating_add(size) > budget {
                to = entry.epoch;
                break;
            }
            used = used.saturating_add(size);
            match exported {
                Some((route, _)) => new_routes.push(Route {
                    prefix: entry.prefix.clone(),
                    path: route.path.clone(),
                    auth: route.auth,
                    props: Vec::new(),
                }),
                None => withdrawn_routes.push(entry.prefix.clone()),
            }
        }
        self.in_flight = Some(InFlight {
            previous_epoch: from,
            sent_at: now,
        });
        self.last_known_epoch = to;
        self.last_update = Some(now);
        Some(RouteUpdateRequest {
            routing_table_id: table.routing_table_id(),
            current_epoch_index: table.current_epoch(),
            from_epoch_index: from,
            to_epoch_index: to,
            hold_down_time: self.config.route_expiry_ms,
            speaker: own_address.clone(),
            new_routes,
            withdrawn_routes,
        })
    }

    /// The peer fulfilled the last update.
    pub fn update_acknowledged(&mut self) {
        self.in_flight = None;
    }

    /// The peer rejected the last update or it timed out: resend from where the peer was.
    pub fn update_failed(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.last_known_epoch = f.previous_epoch;
        }
    }

    /// Export rules from the JS connector: never hand a peer its own routes (that would invite
    /// a loop), and never offer a parent transit through our peers or other parents.
    fn exports(&self, route: &ForwardingRoute<P>) -> bool {
        if route.next_hop.as_ref() == Some(&self.peer) {
            return false;
        }
        !(self.peer_relation == Relation::Parent
            && matches!(route.relation, Relation::Peer | Relation::Parent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccp::messages::RoutingTableId;

    const ID: RoutingTableId = RoutingTableId([7; 16]);

    fn me() -> Address {
        Address::try_from("g.me").unwrap()
    }

    fn fwd(hop: Option<&str>, relation: Relation) -> Option<ForwardingRoute<String>> {
        Some(ForwardingRoute {
            next_hop: hop.map(str::to_owned),
            relation,
            path: vec!["g.me".into()],
            auth: [3; 32],
        })
    }

    fn table(n: usize) -> ForwardingTable<String> {
        let mut t = ForwardingTable::new(ID);
        for i in 0..n {
            t.set(&format!("g.p{i}"), fwd(Some("c"), Relation::Child));
        }
        t
    }

    fn control(mode: Mode, id: RoutingTableId, epoch: u32) -> RouteControlRequest {
        RouteControlRequest {
            mode,
            last_known_routing_table_id: id,
            last_known_epoch: epoch,
            features: vec![],
        }
    }

    fn sender(relation: Relation) -> CcpSender<String> {
        CcpSender::new("bob".to_owned(), relation, SenderConfig::default())
    }

    #[test]
    fn idle_sender_sends_nothing() {
        let mut s = sender(Relation::Peer);
        let t = table(3);
        assert_eq!(s.mode(), Mode::Idle);
        assert_eq!(s.next_timeout(t.current_epoch()), None);
        assert_eq!(s.poll(1_000, &t, &me()), None);
    }

    #[test]
    fn sync_request_starts_updates_from_the_known_epoch() {
        let mut s = sender(Relation::Peer);
        let t = table(3);
        s.handle_route_control(&control(Mode::Sync, ID, 1), &t);
        assert_eq!(s.mode(), Mode::Sync);
        assert_eq!(s.last_known_epoch(), 1);
        assert_eq!(s.next_timeout(3), Some(0));
        let u = s.poll(1_000, &t, &me()).unwrap();
        assert_eq!(
            (u.from_epoch_index, u.to_epoch_index, u.current_epoch_index),
            (1, 3, 3)
        );
        assert_eq!(u.routing_table_id, ID);
        assert_eq!(u.hold_down_time, 45_000);
        assert_eq!(u.speaker, me());
        assert_eq!(
            u.new_routes
                .iter()
                .map(|r| r.prefix.as_str())
                .collect::<Vec<_>>(),
            vec!["g.p1", "g.p2"]
        );
        assert_eq!(s.last_known_epoch(), 3);
        assert!(s.is_update_in_flight());
    }

    #[test]
    fn table_id_mismatch_resyncs_from_zero() {
        let mut s = sender(Relation::Peer);
        let t = table(3);
        s.handle_route_control(&control(Mode::Sync, RoutingTableId([1; 16]), 2), &t);
        assert_eq!(s.last_known_epoch(), 0);
        let u = s.poll(0, &t, &me()).unwrap();
        assert_eq!((u.from_epoch_index, u.new_routes.len()), (0, 3));
    }

    #[test]
    fn epoch_beyond_ours_resyncs_from_zero() {
        let mut s = sender(Relation::Peer);
        s.handle_route_control(&control(Mode::Sync, ID, 99), &table(3));
        assert_eq!(s.last_known_epoch(), 0);
    }

    #[test]
    fn idle_request_stops_updates() {
        let mut s = sender(Relation::Peer);
        let t = table(1);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        s.handle_route_control(&control(Mode::Idle, ID, 1), &t);
        assert_eq!(s.poll(100_000, &t, &me()), None);
        assert_eq!(s.next_timeout(1), None);
    }

    #[test]
    fn updates_are_batched() {
        let mut s = sender(Relation::Peer);
        let t = table(120);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let u = s.poll(0, &t, &me()).unwrap();
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (0, 50));
        assert_eq!(u.new_routes.len(), 50);
        // nothing more until acknowledged
        assert_eq!(s.poll(10, &t, &me()), None);
        s.update_acknowledged();
        // behind: the next batch follows after the minimum interval
        assert_eq!(s.next_timeout(120), Some(150));
        assert_eq!(s.poll(149, &t, &me()), None);
        let u = s.poll(150, &t, &me()).unwrap();
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (50, 100));
        s.update_acknowledged();
        let u = s.poll(300, &t, &me()).unwrap();
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (100, 120));
    }

    #[test]
    fn large_updates_stay_within_one_packet() {
        let mut t = ForwardingTable::new(ID);
        let long = "x".repeat(1_000);
        for i in 0..40 {
            t.set(&format!("g.{long}{i}"), fwd(Some("c"), Relation::Child));
        }
        t.set("g.gone", fwd(Some("c"), Relation::Child));
        t.set("g.gone", None);
        let mut s = sender(Relation::Peer);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let expiry = crate::packet::Timestamp::from_unix_millis(0);
        let mut from = 0;
        let mut seen = 0;
        for round in 0..5u64 {
            let Some(u) = s.poll(round * 1_000, &t, &me()) else {
                break;
            };
            assert_eq!(u.from_epoch_index, from);
            assert!(u.encode().len() <= MAX_DATA_LEN, "round {round}");
            u.to_prepare(expiry).unwrap();
            seen += u.new_routes.len() + u.withdrawn_routes.len();
            from = u.to_epoch_index;
            s.update_acknowledged();
            if from == t.current_epoch() {
                break;
            }
        }
        assert_eq!(from, t.current_epoch());
        assert_eq!(seen, 41);
    }

    #[test]
    fn route_that_can_never_fit_is_withdrawn_and_the_epoch_advances() {
        let mut t = ForwardingTable::new(ID);
        t.set("g.a", fwd(Some("c"), Relation::Child));
        let huge = ForwardingRoute {
            next_hop: Some("c".to_owned()),
            relation: Relation::Child,
            path: vec![
                "g.me".into(),
                format!("g.{}", "h".repeat(MAX_DATA_LEN - 100)),
            ],
            auth: [4; 32],
        };
        t.set("g.huge", Some(huge));
        t.set("g.b", fwd(Some("c"), Relation::Child));
        let mut s = sender(Relation::Peer);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let expiry = crate::packet::Timestamp::from_unix_millis(0);
        let u = s.poll(0, &t, &me()).unwrap();
        u.to_prepare(expiry).unwrap();
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (0, 3));
        let prefixes: Vec<&str> = u.new_routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, vec!["g.a", "g.b"]);
        assert_eq!(u.withdrawn_routes, vec!["g.huge"]);
        // a failed send retries the same, still sendable, update rather than stalling
        s.update_failed();
        let again = s.poll(30_000, &t, &me()).unwrap();
        assert_eq!(again, u);
    }

    #[test]
    fn prefix_that_can_never_fit_is_skipped() {
        let mut t = ForwardingTable::new(ID);
        let prefix = format!("g.{}", "p".repeat(MAX_DATA_LEN));
        t.set(&prefix, fwd(Some("c"), Relation::Child));
        t.set("g.a", fwd(Some("c"), Relation::Child));
        let mut s = sender(Relation::Peer);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let u = s.poll(0, &t, &me()).unwrap();
        u.to_prepare(crate::packet::Timestamp::from_unix_millis(0))
            .unwrap();
        assert_eq!(u.to_epoch_index, 2);
        assert_eq!(u.new_routes.len(), 1);
        assert!(u.withdrawn_routes.is_empty());
    }

    #[test]
    fn route_size_matches_the_encoding() {
        let route = Route {
            prefix: "g.prefix".into(),
            path: vec!["g.me".into(), "g.x".repeat(50)],
            auth: [0; 32],
            props: vec![],
        };
        let mut req = RouteUpdateRequest {
            routing_table_id: ID,
            current_epoch_index: 0,
            from_epoch_index: 0,
            to_epoch_index: 0,
            hold_down_time: 0,
            speaker: me(),
            new_routes: vec![],
            withdrawn_routes: vec![],
        };
        let empty = req.encode().len();
        req.new_routes.push(route.clone());
        assert_eq!(
            req.encode().len() - empty,
            route_size(&route.prefix, route.path.iter().map(String::as_str))
        );
        assert!(empty + update_budget(&me()) <= MAX_DATA_LEN);
    }

    #[test]
    fn compaction_restarts_the_peer_from_zero_of_the_new_table() {
        use crate::ccp::receiver::{CcpReceiver, ImportFilter};
        let mut t = ForwardingTable::new(ID).with_log_limit(6);
        t.set("g.a", fwd(Some("c"), Relation::Child));
        t.set("g.b", fwd(Some("c"), Relation::Child));
        let mut s = sender(Relation::Peer);
        let mut rx = CcpReceiver::new(0, 45_000, 30_000);
        let bob = Address::try_from("g.bob").unwrap();
        let filter = ImportFilter {
            own_address: &bob,
            global_prefix: "g",
        };
        s.handle_route_control(&rx.route_control_request(), &t);
        let u = s.poll(0, &t, &me()).unwrap();
        rx.handle_route_update(0, &u, filter);
        s.update_acknowledged();
        assert_eq!((rx.routing_table_id(), rx.epoch()), (ID, 2));
        // churn until the table compacts; the sender is mid-update when it happens
        t.set("g.b", None);
        let lost = s.poll(1_000, &t, &me()).unwrap();
        assert_eq!(lost.to_epoch_index, 3);
        for i in 0..3 {
            t.set(
                "g.a",
                fwd(Some(if i % 2 == 0 { "d" } else { "c" }), Relation::Child),
            );
        }
        assert_ne!(t.routing_table_id(), ID);
        assert_eq!(s.next_timeout(t.current_epoch()), Some(31_000));
        let u = s.poll(1_001, &t, &me()).unwrap();
        assert_eq!(u.routing_table_id, t.routing_table_id());
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (0, 1));
        let out = rx.handle_route_update(1_001, &u, filter);
        assert_eq!(out.route_control, None);
        s.update_acknowledged();
        assert_eq!(rx.prefixes().collect::<Vec<_>>(), vec!["g.a"]);
        assert_eq!(rx.get("g.a").unwrap().path, t.get("g.a").unwrap().path);
        assert_eq!(
            (rx.routing_table_id(), rx.epoch()),
            (t.routing_table_id(), t.current_epoch())
        );
    }

    #[test]
    fn heartbeat_after_interval_when_up_to_date() {
        let mut s = sender(Relation::Peer);
        let t = table(2);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        s.poll(1_000, &t, &me()).unwrap();
        s.update_acknowledged();
        assert_eq!(s.next_timeout(2), Some(31_000));
        assert_eq!(s.poll(30_999, &t, &me()), None);
        let hb = s.poll(31_000, &t, &me()).unwrap();
        assert_eq!((hb.from_epoch_index, hb.to_epoch_index), (2, 2));
        assert!(hb.new_routes.is_empty() && hb.withdrawn_routes.is_empty());
    }

    #[test]
    fn failure_rolls_back_the_epoch() {
        let mut s = sender(Relation::Peer);
        let t = table(2);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        s.poll(0, &t, &me()).unwrap();
        assert_eq!(s.last_known_epoch(), 2);
        s.update_failed();
        assert_eq!(s.last_known_epoch(), 0);
        assert!(!s.is_update_in_flight());
        let u = s.poll(150, &t, &me()).unwrap();
        assert_eq!(u.from_epoch_index, 0);
    }

    #[test]
    fn unanswered_update_times_out_and_is_resent() {
        let mut s = sender(Relation::Peer);
        let t = table(2);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        s.poll(0, &t, &me()).unwrap();
        assert_eq!(s.next_timeout(2), Some(30_000));
        assert_eq!(s.poll(29_999, &t, &me()), None);
        let u = s.poll(30_000, &t, &me()).unwrap();
        assert_eq!((u.from_epoch_index, u.to_epoch_index), (0, 2));
    }

    #[test]
    fn route_control_during_flight_discards_the_pending_answer() {
        let mut s = sender(Relation::Peer);
        let t = table(2);
        s.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        s.poll(0, &t, &me()).unwrap();
        s.handle_route_control(&control(Mode::Sync, ID, 1), &t);
        s.update_failed();
        assert_eq!(s.last_known_epoch(), 1);
    }

    #[test]
    fn reset_returns_to_idle() {
        let mut s = sender(Relation::Peer);
        let t = table(2);
        s.handle_route_control(&control(Mode::Sync, ID, 2), &t);
        s.reset();
        assert_eq!((s.mode(), s.last_known_epoch()), (Mode::Idle, 0));
    }

    #[test]
    fn withdrawals_and_export_rules() {
        let mut t = ForwardingTable::new(ID);
        t.set("g.via-bob", fwd(Some("bob"), Relation::Peer));
        t.set("g.via-carl", fwd(Some("carl"), Relation::Peer));
        t.set("g.via-dad", fwd(Some("dad"), Relation::Parent));
        t.set("g.kid", fwd(Some("kid"), Relation::Child));
        t.set("g.me", fwd(None, Relation::Local));
        t.set("g.gone", fwd(Some("kid"), Relation::Child));
        t.set("g.gone", None);

        let mut to_peer = sender(Relation::Peer);
        to_peer.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let u = to_peer.poll(0, &t, &me()).unwrap();
        let names = |v: &[Route]| v.iter().map(|r| r.prefix.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&u.new_routes),
            vec!["g.via-carl", "g.via-dad", "g.kid", "g.me"]
        );
        assert_eq!(u.withdrawn_routes, vec!["g.via-bob", "g.gone"]);

        let mut to_parent = sender(Relation::Parent);
        to_parent.handle_route_control(&control(Mode::Sync, ID, 0), &t);
        let u = to_parent.poll(0, &t, &me()).unwrap();
        assert_eq!(names(&u.new_routes), vec!["g.kid", "g.me"]);
        assert_eq!(
            u.withdrawn_routes,
            vec!["g.via-bob", "g.via-carl", "g.via-dad", "g.gone"]
        );
    }
}
