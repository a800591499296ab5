//! The receiving half of CCP from one peer: the routes that peer advertised, which of its
//! routing tables they come from and up to which epoch. Updates are applied only when they
//! continue from the epoch we hold; a gap or a new routing table id makes us ask the peer
//! (with a route control request) to resend from what we know. Routes expire when the peer
//! stays silent longer than the hold-down time it advertised.

use super::broadcaster::is_under;
use super::messages::{Mode, RouteControlRequest, RouteUpdateRequest, RoutingTableId};
use super::sender::{route_size, update_budget};
use crate::packet::{validate_address, Address};
use std::collections::{BTreeMap, BTreeSet};

/// A route as the peer advertised it, after the import filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRoute {
    pub path: Vec<String>,
    pub auth: [u8; 32],
}

/// What handling an update or a timeout produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverOutcome {
    /// Prefixes whose route from this peer appeared, changed or disappeared: route selection
    /// must look at them again.
    pub changed_prefixes: Vec<String>,
    /// A route control request to send to the peer.
    pub route_control: Option<RouteControlRequest>,
}

/// Longest path (in hops) of a route we accept. Real paths are a handful of hops; the limit
/// keeps a peer from making us store and relay arbitrarily long ones.
pub const MAX_HOPS: usize = 32;

/// How many routes we keep from one peer unless configured otherwise.
pub const DEFAULT_MAX_ROUTES_PER_PEER: usize = 10_000;

/// Routes we accept: valid addresses strictly under the global prefix (the default route is
/// ours to configure, not a peer's to announce) whose path does not already contain us, has
/// at most [`MAX_HOPS`] hops, and still fits in one of our route updates once we prepend our
/// own address (a route we could never relay would only stall our updates).
#[derive(Debug, Clone, Copy)]
pub struct ImportFilter<'a> {
    pub own_address: &'a Address,
    pub global_prefix: &'a str,
}

impl ImportFilter<'_> {
    fn accepts(&self, prefix: &str, path: &[String]) -> bool {
        let own = self.own_address.as_str();
        path.len() <= MAX_HOPS
            && validate_address(prefix.as_bytes()).is_ok()
            && is_under(prefix, self.global_prefix)
            && prefix != self.global_prefix
            && !path.iter().any(|hop| hop == own)
            && route_size(
                prefix,
                std::iter::once(own).chain(path.iter().map(String::as_str)),
            ) <= update_budget(self.own_address)
    }
}

/// Longest wait before a refused route control request is sent again, however many refusals
/// came before it (unless the retry interval itself is longer).
pub const MAX_ROUTE_CONTROL_BACKOFF_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct CcpReceiver {
    routing_table_id: RoutingTableId,
    epoch: u32,
    expiry: u64,
    hold_down_ms: u64,
    retry_interval_ms: u64,
    route_control_retry_at: Option<u64>,
    /// Route control requests the peer refused in a row (a final Reject): each doubles the wait
    /// before the next, and none is sent at expiry meanwhile.
    refusals: u32,
    routes: BTreeMap<String, IncomingRoute>,
    max_routes: usize,
}

impl CcpReceiver {
    /// The peer gets `hold_down_ms` from `now` to send its first update before we ask again;
    /// a rejected route control request is retried after `retry_interval_ms`.
    pub fn new(now: u64, hold_down_ms: u64, retry_interval_ms: u64) -> Self {
        CcpReceiver {
            routing_table_id: RoutingTableId::default(),
            epoch: 0,
            expiry: now.saturating_add(hold_down_ms),
            hold_down_ms,
            retry_interval_ms,
            route_control_retry_at: None,
            refusals: 0,
            routes: BTreeMap::new(),
            max_routes: DEFAULT_MAX_ROUTES_PER_PEER,
        }
    }

    /// Keeps at most `max_routes` of this peer's routes; routes for further prefixes are
    /// ignored, so a peer cannot make us hold an unbounded table.
    pub fn with_max_routes(mut self, max_routes: usize) -> Self {
        self.max_routes = max_routes;
        self
    }

    pub fn max_routes(&self) -> usize {
        self.max_routes
    }

    pub fn routing_table_id(&self) -> RoutingTableId {
        self.routing_table_id
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    pub fn get(&self, prefix: &str) -> Option<&IncomingRoute> {
        self.routes.get(prefix)
    }

    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Asks the peer to sync us from what we hold.
    pub fn route_control_request(&self) -> RouteControlRequest {
        RouteControlRequest {
            mode: Mode::Sync,
            last_known_routing_table_id: self.routing_table_id,
            last_known_epoch: self.epoch,
            features: Vec::new(),
        }
    }

    pub fn route_control_acknowledged(&mut self) {
        self.route_control_retry_at = None;
        self.refusals = 0;
    }

    /// The request did not get through (the link is down, no answer in time): asked again
    /// after the retry interval, and a refusal before it is forgotten, since the peer on the
    /// other side of a new connection may answer otherwise.
    pub fn route_control_failed(&mut self, now: u64) {
        self.route_control_retry_at = Some(now.saturating_add(self.retry_interval_ms));
        self.refusals = 0;
    }

    /// The peer refused the request (a final Reject, such as a JS connector's "non-peer" to
    /// its child): it would refuse a repeat too, so the wait before the next one doubles with
    /// each refusal in a row, from the retry interval up to [`MAX_ROUTE_CONTROL_BACKOFF_MS`].
    /// Returns how many refusals in a row this one makes.
    pub fn route_control_refused(&mut self, now: u64) -> u32 {
        self.refusals = self.refusals.saturating_add(1);
        let doubled = self
            .retry_interval_ms
            .saturating_mul(1u64 << (self.refusals - 1).min(32));
        let wait = doubled.min(MAX_ROUTE_CONTROL_BACKOFF_MS.max(self.retry_interval_ms));
        self.route_control_retry_at = Some(now.saturating_add(wait));
        self.refusals
    }

    /// Route control requests refused in a row so far.
    pub fn route_control_refusals(&self) -> u32 {
        self.refusals
    }

    /// Forgets the refusals (the link came up again): the next refusal waits the retry
    /// interval only.
    pub fn reset_route_control_backoff(&mut self) {
        self.refusals = 0;
    }

    /// When [`CcpReceiver::poll`] next has something to do.
    pub fn next_timeout(&self) -> u64 {
        self.route_control_retry_at
            .map_or(self.expiry, |r| r.min(self.expiry))
    }

    pub fn handle_route_update(
        &mut self,
        now: u64,
        update: &RouteUpdateRequest,
        filter: ImportFilter<'_>,
    ) -> ReceiverOutcome {
        let mut changed = BTreeSet::new();
        let hold_down = u64::from(update.hold_down_time);
        self.expiry = self.expiry.max(now.saturating_add(hold_down));
        self.hold_down_ms = hold_down;

        if update.routing_table_id != self.routing_table_id {
            // The peer restarted (or we never synced): what we hold describes a table that no
            // longer exists, so drop it and start over at epoch 0 of the new one.
            changed.extend(std::mem::take(&mut self.routes).into_keys());
            self.routing_table_id = update.routing_table_id;
            self.epoch = 0;
        }

        if update.from_epoch_index > self.epoch {
            // Applying this would skip the epochs in between.
            return ReceiverOutcome {
                changed_prefixes: changed.into_iter().collect(),
                route_control: Some(self.route_control_request()),
            };
        }
        if update.to_epoch_index < self.epoch {
            // Older than what we hold: a delayed duplicate.
            return ReceiverOutcome {
                changed_prefixes: changed.into_iter().collect(),
                route_control: None,
            };
        }

        for prefix in &update.withdrawn_routes {
            if self.routes.remove(prefix).is_some() {
                changed.insert(prefix.clone());
            }
        }
        for route in &update.new_routes {
            if !filter.accepts(&route.prefix, &route.path) {
                // Whatever the peer offered before for this prefix is superseded by a route we
                // refuse, so it goes too.
                if self.routes.remove(&route.prefix).is_some() {
                    changed.insert(route.prefix.clone());
                }
                continue;
            }
            let incoming = IncomingRoute {
                path: route.path.clone(),
                auth: route.auth,
            };
            let full = self.routes.len() >= self.max_routes;
            match self.routes.get_mut(&route.prefix) {
                Some(held) if *held == incoming => {}
                Some(held) => {
                    *held = incoming;
                    changed.insert(route.prefix.clone());
                }
                // Full: a new prefix is ignored. Withdrawals above may make room later.
                None if full => {}
                None => {
                    self.routes.insert(route.prefix.clone(), incoming);
                    changed.insert(route.prefix.clone());
                }
            }
        }
        self.epoch = update.to_epoch_index;
        ReceiverOutcome {
            changed_prefixes: changed.into_iter().collect(),
            route_control: None,
        }
    }

    /// Expires the peer's routes when it has been silent past the hold-down time (then asks it
    /// to resync from scratch, unless it refuses our requests: then the backoff's retry asks),
    /// and retries a failed or refused route control request when due.
    pub fn poll(&mut self, now: u64) -> ReceiverOutcome {
        let mut changed_prefixes = Vec::new();
        if now >= self.expiry {
            changed_prefixes = std::mem::take(&mut self.routes).into_keys().collect();
            self.routing_table_id = RoutingTableId::default();
            self.epoch = 0;
            self.expiry = now.saturating_add(self.hold_down_ms);
            if self.refusals == 0 {
                self.route_control_retry_at = None;
                return ReceiverOutcome {
                    changed_prefixes,
                    route_control: Some(self.route_control_request()),
                };
            }
        }
        let route_control = match self.route_control_retry_at {
            Some(at) if now >= at => {
                self.route_control_retry_at = None;
                Some(self.route_control_request())
            }
            _ => None,
        };
        ReceiverOutcome {
            changed_prefixes,
            route_control,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ccp::messages::Route;

    const T1: RoutingTableId = RoutingTableId([1; 16]);
    const T2: RoutingTableId = RoutingTableId([2; 16]);

    fn me() -> Address {
        Address::try_from("g.me").unwrap()
    }

    fn route(prefix: &str, path: &[&str]) -> Route {
        Route {
            prefix: prefix.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            auth: [5; 32],
            props: vec![],
        }
    }

    fn update(
        id: RoutingTableId,
        from: u32,
        to: u32,
        new: Vec<Route>,
        gone: &[&str],
    ) -> RouteUpdateRequest {
        RouteUpdateRequest {
            routing_table_id: id,
            current_epoch_index: to,
            from_epoch_index: from,
            to_epoch_index: to,
            hold_down_time: 45_000,
            speaker: Address::try_from("g.bob").unwrap(),
            new_routes: new,
            withdrawn_routes: gone.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn apply(r: &mut CcpReceiver, now: u64, u: &RouteUpdateRequest) -> ReceiverOutcome {
        let own = me();
        r.handle_route_update(
            now,
            u,
            ImportFilter {
                own_address: &own,
                global_prefix: "g",
            },
        )
    }

    fn synced() -> CcpReceiver {
        let mut r = CcpReceiver::new(0, 45_000, 30_000);
        let out = apply(
            &mut r,
            0,
            &update(
                T1,
                0,
                2,
                vec![route("g.bob", &["g.bob"]), route("g.x", &["g.bob", "g.x"])],
                &[],
            ),
        );
        assert_eq!(out.changed_prefixes, vec!["g.bob", "g.x"]);
        r
    }

    #[test]
    fn fresh_receiver_requests_sync_from_nothing() {
        let r = CcpReceiver::new(0, 45_000, 30_000);
        assert_eq!(
            r.route_control_request(),
            RouteControlRequest {
                mode: Mode::Sync,
                last_known_routing_table_id: RoutingTableId::default(),
                last_known_epoch: 0,
                features: vec![],
            }
        );
        assert_eq!(r.next_timeout(), 45_000);
    }

    #[test]
    fn first_update_adopts_table_and_applies_routes() {
        let r = synced();
        assert_eq!(r.routing_table_id(), T1);
        assert_eq!(r.epoch(), 2);
        assert_eq!(r.get("g.x").unwrap().path, vec!["g.bob", "g.x"]);
    }

    #[test]
    fn contiguous_update_applies_withdrawals_and_changes() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(
                T1,
                2,
                4,
                vec![route("g.y", &["g.bob", "g.y"])],
                &["g.x", "g.never"],
            ),
        );
        assert_eq!(out.changed_prefixes, vec!["g.x", "g.y"]);
        assert_eq!(out.route_control, None);
        assert_eq!(r.epoch(), 4);
        assert!(r.get("g.x").is_none());
    }

    #[test]
    fn overlapping_update_is_applied() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(T1, 1, 3, vec![route("g.x", &["g.bob", "g.x"])], &[]),
        );
        assert_eq!(
            out.changed_prefixes,
            Vec::<String>::new(),
            "same route is no change"
        );
        assert_eq!(r.epoch(), 3);
    }

    #[test]
    fn heartbeat_moves_epoch_and_expiry() {
        let mut r = synced();
        let out = apply(&mut r, 20_000, &update(T1, 2, 2, vec![], &[]));
        assert_eq!(out, ReceiverOutcome::default());
        assert_eq!(r.expiry(), 65_000);
    }

    #[test]
    fn gap_requests_resync_from_known_epoch() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(T1, 3, 5, vec![route("g.z", &["g.bob"])], &[]),
        );
        assert!(out.changed_prefixes.is_empty());
        let ctl = out.route_control.unwrap();
        assert_eq!(
            (
                ctl.mode,
                ctl.last_known_routing_table_id,
                ctl.last_known_epoch
            ),
            (Mode::Sync, T1, 2)
        );
        assert!(r.get("g.z").is_none());
        assert_eq!(r.epoch(), 2);
    }

    #[test]
    fn stale_update_is_ignored() {
        let mut r = synced();
        apply(&mut r, 10, &update(T1, 2, 4, vec![], &[]));
        let out = apply(
            &mut r,
            10,
            &update(T1, 0, 2, vec![route("g.old", &["g.bob"])], &[]),
        );
        assert_eq!(out, ReceiverOutcome::default());
        assert!(r.get("g.old").is_none());
        assert_eq!(r.epoch(), 4);
    }

    #[test]
    fn new_table_id_from_zero_replaces_routes() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(T2, 0, 1, vec![route("g.x", &["g.bob", "g.x"])], &[]),
        );
        // g.bob vanished with the old table; g.x came back identical but was dropped in between
        assert_eq!(out.changed_prefixes, vec!["g.bob", "g.x"]);
        assert_eq!(out.route_control, None);
        assert_eq!((r.routing_table_id(), r.epoch()), (T2, 1));
        assert!(r.get("g.bob").is_none());
    }

    #[test]
    fn new_table_id_mid_stream_requests_resync_from_zero() {
        let mut r = synced();
        let out = apply(&mut r, 10, &update(T2, 7, 9, vec![], &[]));
        assert_eq!(out.changed_prefixes, vec!["g.bob", "g.x"]);
        let ctl = out.route_control.unwrap();
        assert_eq!(
            (ctl.last_known_routing_table_id, ctl.last_known_epoch),
            (T2, 0)
        );
    }

    #[test]
    fn looping_route_is_rejected_and_replaces_the_old_one() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(T1, 2, 3, vec![route("g.x", &["g.bob", "g.me", "g.x"])], &[]),
        );
        assert_eq!(out.changed_prefixes, vec!["g.x"]);
        assert!(r.get("g.x").is_none());
        let out = apply(
            &mut r,
            10,
            &update(T1, 3, 4, vec![route("g.w", &["g.me"])], &[]),
        );
        assert!(out.changed_prefixes.is_empty());
        assert!(r.get("g.w").is_none());
    }

    #[test]
    fn import_filter_rejects_foreign_default_and_invalid_prefixes() {
        let mut r = synced();
        let out = apply(
            &mut r,
            10,
            &update(
                T1,
                2,
                3,
                vec![
                    route("g", &["g.bob"]),
                    route("test.x", &["g.bob"]),
                    route("gx.y", &["g.bob"]),
                    route("g..y", &["g.bob"]),
                    route("g.ok", &["g.bob"]),
                ],
                &[],
            ),
        );
        assert_eq!(out.changed_prefixes, vec!["g.ok"]);
        assert_eq!(
            r.prefixes().collect::<Vec<_>>(),
            vec!["g.bob", "g.ok", "g.x"]
        );
    }

    #[test]
    fn import_filter_rejects_long_paths_and_routes_we_could_not_relay() {
        let mut r = synced();
        let hops: Vec<String> = (0..=MAX_HOPS).map(|i| format!("g.h{i}")).collect();
        let hop_refs: Vec<&str> = hops.iter().map(String::as_str).collect();
        // just under the budget once our own address is prepended, and just over
        let me = me();
        let fits = |extra: usize| {
            let hop = format!("g.{}", "h".repeat(extra));
            (route_size("g.big", [me.as_str(), hop.as_str()].into_iter()) <= update_budget(&me))
                .then_some(hop)
        };
        let mut n = 30_000;
        while fits(n + 1).is_some() {
            n += 1;
        }
        let biggest = fits(n).unwrap();
        let too_big = format!("g.{}", "h".repeat(n + 1));
        let out = apply(
            &mut r,
            10,
            &update(
                T1,
                2,
                3,
                vec![
                    route("g.max", &hop_refs[..MAX_HOPS]),
                    route("g.long", &hop_refs),
                    route("g.big", &[biggest.as_str()]),
                    route("g.huge", &[too_big.as_str()]),
                ],
                &[],
            ),
        );
        assert_eq!(out.changed_prefixes, vec!["g.big", "g.max"]);
        assert_eq!(
            r.prefixes().collect::<Vec<_>>(),
            vec!["g.big", "g.bob", "g.max", "g.x"]
        );
        assert_eq!(r.epoch(), 3);
    }

    #[test]
    fn routes_beyond_the_cap_are_ignored() {
        let mut r = CcpReceiver::new(0, 45_000, 30_000).with_max_routes(3);
        assert_eq!(CcpReceiver::new(0, 1, 1).max_routes(), 10_000);
        let routes = (0..5)
            .map(|i| route(&format!("g.p{i}"), &["g.bob"]))
            .collect();
        let out = apply(&mut r, 0, &update(T1, 0, 1, routes, &[]));
        assert_eq!(out.changed_prefixes, vec!["g.p0", "g.p1", "g.p2"]);
        assert_eq!(r.prefixes().count(), 3);
        // a held prefix can still change, and a withdrawal makes room for a new one
        let out = apply(
            &mut r,
            0,
            &update(
                T1,
                1,
                2,
                vec![route("g.p0", &["g.bob", "g.z"]), route("g.p4", &["g.bob"])],
                &["g.p1"],
            ),
        );
        assert_eq!(out.changed_prefixes, vec!["g.p0", "g.p1", "g.p4"]);
        assert_eq!(
            r.prefixes().collect::<Vec<_>>(),
            vec!["g.p0", "g.p2", "g.p4"]
        );
        assert_eq!(r.epoch(), 2);
    }

    #[test]
    fn silence_past_hold_down_expires_routes_and_requests_resync() {
        let mut r = synced();
        assert_eq!(r.next_timeout(), 45_000);
        assert_eq!(r.poll(44_999), ReceiverOutcome::default());
        let out = r.poll(45_000);
        assert_eq!(out.changed_prefixes, vec!["g.bob", "g.x"]);
        let ctl = out.route_control.unwrap();
        assert_eq!(
            (ctl.last_known_routing_table_id, ctl.last_known_epoch),
            (RoutingTableId::default(), 0)
        );
        assert_eq!(r.prefixes().count(), 0);
        // asks again one hold-down later if the peer stays silent
        assert_eq!(r.next_timeout(), 90_000);
    }

    #[test]
    fn failed_route_control_is_retried() {
        let mut r = CcpReceiver::new(0, 45_000, 30_000);
        r.route_control_failed(1_000);
        assert_eq!(r.next_timeout(), 31_000);
        assert_eq!(r.poll(30_999), ReceiverOutcome::default());
        let out = r.poll(31_000);
        assert!(out.route_control.is_some());
        assert_eq!(r.poll(31_001), ReceiverOutcome::default());
        r.route_control_failed(32_000);
        r.route_control_acknowledged();
        assert_eq!(r.next_timeout(), 45_000);
    }

    /// The times at which `r` sends route control requests between `from` and `to`, each one
    /// answered with `refused` (true: a refusal, false: an acknowledgement).
    fn requests_sent(r: &mut CcpReceiver, from: u64, to: u64, refused: bool) -> Vec<u64> {
        let mut sent = Vec::new();
        let mut now = from;
        while now <= to {
            if r.poll(now).route_control.is_some() {
                sent.push(now);
                if refused {
                    r.route_control_refused(now);
                } else {
                    r.route_control_acknowledged();
                }
            }
            now = r.next_timeout().max(now + 1);
        }
        sent
    }

    #[test]
    fn refused_route_control_backs_off_doubling_up_to_the_cap() {
        let mut r = CcpReceiver::new(0, 45_000, 30_000);
        assert_eq!(r.route_control_refused(0), 1);
        // 30 s, then 60, 120, 240, 480, then the 600 s cap; the hold-down expiry (every 45 s)
        // asks nothing meanwhile.
        let sent = requests_sent(&mut r, 1, 3_000_000, true);
        assert_eq!(
            sent,
            [30_000, 90_000, 210_000, 450_000, 930_000, 1_530_000, 2_130_000, 2_730_000]
        );
        assert_eq!(r.route_control_refusals(), 9);
        // An acknowledgement ends it: the next refusal waits 30 s again.
        r.route_control_acknowledged();
        assert_eq!(r.route_control_refusals(), 0);
        assert_eq!(r.route_control_refused(3_000_000), 1);
        assert_eq!(
            requests_sent(&mut r, 3_000_001, 3_030_000, true),
            [3_030_000]
        );
        assert_eq!(r.route_control_refusals(), 2);
        // So does a failure to get through (the link went down), and a reset.
        r.route_control_failed(3_100_000);
        assert_eq!(r.route_control_refusals(), 0);
        assert_eq!(r.route_control_refused(3_200_000), 1);
        r.reset_route_control_backoff();
        assert_eq!(r.route_control_refusals(), 0);
    }

    #[test]
    fn without_refusals_silence_asks_at_every_expiry() {
        let mut r = CcpReceiver::new(0, 45_000, 30_000);
        assert_eq!(
            requests_sent(&mut r, 1, 200_000, false),
            [45_000, 90_000, 135_000, 180_000]
        );
    }
}
