//! The forwarding routing table: the routes we advertise to peers, identified by a routing
//! table id and versioned by epochs. Every change is appended to a log indexed by epoch, so a
//! peer that knows epoch `n` is brought up to date with the log entries from `n` on.
//!
//! Superseded entries leave empty slots, so a table that keeps changing grows its log without
//! bound. Past a limit the log is compacted: the table takes a new routing table id and logs
//! its current routes from epoch 0, which makes every peer resynchronise from scratch.

use super::broadcaster::Relation;
use super::messages::RoutingTableId;
use crate::stream::crypto::sha256;
use std::collections::BTreeMap;

/// Log length that triggers compaction unless configured otherwise: a million changes.
pub const DEFAULT_LOG_LIMIT: usize = 1 << 20;

/// A route as we advertise it: the path starts with our own address, and `auth` is derived
/// from the route we selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingRoute<P> {
    /// The account packets for this prefix go to; `None` for our own address.
    pub next_hop: Option<P>,
    /// Relation of `next_hop` (`Local` for our own address); per-peer export rules use it.
    pub relation: Relation,
    pub path: Vec<String>,
    pub auth: [u8; 32],
}

/// One change in the log: the prefix's new route, or `None` when it was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry<P> {
    pub epoch: u32,
    pub prefix: String,
    pub route: Option<ForwardingRoute<P>>,
}

#[derive(Debug, Clone)]
pub struct ForwardingTable<P> {
    id: RoutingTableId,
    routes: BTreeMap<String, ForwardingRoute<P>>,
    /// Index = epoch. An entry is cleared when a later entry for the same prefix supersedes
    /// it: anyone reading from an epoch before the later one receives that one instead.
    log: Vec<Option<LogEntry<P>>>,
    latest_epoch: BTreeMap<String, u32>,
    log_limit: usize,
}

impl<P: Clone + PartialEq> ForwardingTable<P> {
    /// `id` should be fresh random bytes at every start, so peers notice the restart and
    /// resynchronise from epoch 0.
    pub fn new(id: RoutingTableId) -> Self {
        ForwardingTable {
            id,
            routes: BTreeMap::new(),
            log: Vec::new(),
            latest_epoch: BTreeMap::new(),
            log_limit: DEFAULT_LOG_LIMIT,
        }
    }

    /// Compacts the log once it holds `log_limit` entries (and at least twice as many as there
    /// are routes, so a large table is not compacted over and over). Epochs are `u32`s, so the
    /// limit never exceeds `u32::MAX`.
    pub fn with_log_limit(mut self, log_limit: usize) -> Self {
        self.log_limit = log_limit.clamp(1, u32::MAX as usize);
        self
    }

    pub fn routing_table_id(&self) -> RoutingTableId {
        self.id
    }

    /// The epoch the next change will get; a peer that knows this epoch is up to date.
    pub fn current_epoch(&self) -> u32 {
        u32::try_from(self.log.len()).unwrap_or(u32::MAX)
    }

    pub fn get(&self, prefix: &str) -> Option<&ForwardingRoute<P>> {
        self.routes.get(prefix)
    }

    pub fn routes(&self) -> impl Iterator<Item = (&str, &ForwardingRoute<P>)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Prefixes in the table that are `prefix` itself or lie under it.
    pub fn prefixes_under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.routes
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k.as_str())
            .take_while(move |k| k.starts_with(prefix))
            .filter(move |k| super::broadcaster::is_under(k, prefix))
    }

    /// Sets (or with `None` withdraws) the route for `prefix`. Returns the epoch of the logged
    /// change, or `None` when nothing changed. When the change triggers compaction the table
    /// has a new id and the returned epoch is its current epoch, which covers the change.
    pub fn set(&mut self, prefix: &str, route: Option<ForwardingRoute<P>>) -> Option<u32> {
        if self.routes.get(prefix) == route.as_ref() {
            return None;
        }
        match &route {
            Some(r) => self.routes.insert(prefix.to_owned(), r.clone()),
            None => self.routes.remove(prefix),
        };
        let epoch = self.current_epoch();
        if let Some(prev) = self.latest_epoch.insert(prefix.to_owned(), epoch) {
            if let Some(slot) = self.log.get_mut(prev as usize) {
                *slot = None;
            }
        }
        self.log.push(Some(LogEntry {
            epoch,
            prefix: prefix.to_owned(),
            route,
        }));
        let limit = self
            .log_limit
            .max(self.routes.len().saturating_mul(2))
            .min(u32::MAX as usize);
        if self.log.len() >= limit {
            self.compact();
            // The change is now part of the fresh table's initial routes (or, for a
            // withdrawal, simply absent from it).
            return Some(self.current_epoch());
        }
        Some(epoch)
    }

    /// Starts a new routing table: a fresh id (derived from the old one, so no randomness is
    /// needed; peers only compare ids for equality) and one log entry per current route.
    fn compact(&mut self) {
        let digest = sha256(&self.id.0);
        let mut id = [0; 16];
        id.copy_from_slice(&digest[..16]);
        self.id = RoutingTableId(id);
        self.latest_epoch.clear();
        self.log = self
            .routes
            .iter()
            .zip(0u32..)
            .map(|((prefix, route), epoch)| {
                self.latest_epoch.insert(prefix.clone(), epoch);
                Some(LogEntry {
                    epoch,
                    prefix: prefix.clone(),
                    route: Some(route.clone()),
                })
            })
            .collect();
    }

    /// Log entries from epoch `from` (inclusive), at most `max_epochs` epochs' worth, and the
    /// epoch the peer will know after receiving them.
    pub fn entries_since(&self, from: u32, max_epochs: u32) -> (u32, Vec<&LogEntry<P>>) {
        let start = (from as usize).min(self.log.len());
        let end = start
            .saturating_add(max_epochs as usize)
            .min(self.log.len());
        let slice = self.log.get(start..end).unwrap_or_default();
        let to = u32::try_from(end).unwrap_or(u32::MAX).max(from);
        (to, slice.iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(hop: &str) -> Option<ForwardingRoute<String>> {
        Some(ForwardingRoute {
            next_hop: Some(hop.to_owned()),
            relation: Relation::Peer,
            path: vec!["g.me".into(), format!("g.{hop}")],
            auth: [1; 32],
        })
    }

    #[test]
    fn new_table_is_empty_at_epoch_zero() {
        let t = ForwardingTable::<String>::new(RoutingTableId([9; 16]));
        assert_eq!(t.current_epoch(), 0);
        assert_eq!(t.routing_table_id(), RoutingTableId([9; 16]));
        assert_eq!(t.entries_since(0, 50), (0, vec![]));
    }

    #[test]
    fn set_logs_each_change_with_next_epoch() {
        let mut t = ForwardingTable::new(RoutingTableId::default());
        assert_eq!(t.set("g.a", route("a")), Some(0));
        assert_eq!(t.set("g.b", route("b")), Some(1));
        assert_eq!(t.current_epoch(), 2);
        assert_eq!(t.get("g.a"), route("a").as_ref());
        let (to, entries) = t.entries_since(0, 50);
        assert_eq!(to, 2);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.epoch, e.prefix.as_str()))
                .collect::<Vec<_>>(),
            vec![(0, "g.a"), (1, "g.b")]
        );
    }

    #[test]
    fn unchanged_route_is_not_logged() {
        let mut t = ForwardingTable::new(RoutingTableId::default());
        t.set("g.a", route("a"));
        assert_eq!(t.set("g.a", route("a")), None);
        assert_eq!(t.set("g.none", None), None);
        assert_eq!(t.current_epoch(), 1);
    }

    #[test]
    fn withdrawal_is_logged_and_supersedes_the_earlier_entry() {
        let mut t = ForwardingTable::new(RoutingTableId::default());
        t.set("g.a", route("a"));
        t.set("g.b", route("b"));
        assert_eq!(t.set("g.a", None), Some(2));
        assert_eq!(t.get("g.a"), None);
        let (to, entries) = t.entries_since(0, 50);
        assert_eq!(to, 3);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.epoch, e.prefix.as_str(), e.route.is_some()))
                .collect::<Vec<_>>(),
            vec![(1, "g.b", true), (2, "g.a", false)]
        );
    }

    #[test]
    fn entries_since_batches_and_clamps() {
        let mut t = ForwardingTable::new(RoutingTableId::default());
        for i in 0..5 {
            t.set(&format!("g.p{i}"), route("x"));
        }
        let (to, entries) = t.entries_since(1, 2);
        assert_eq!(to, 3);
        assert_eq!(entries.len(), 2);
        assert_eq!(t.entries_since(5, 2), (5, vec![]));
        // a peer claiming a future epoch gets nothing and keeps its claim
        assert_eq!(t.entries_since(9, 2), (9, vec![]));
        assert_eq!(t.entries_since(4, u32::MAX).0, 5);
    }

    #[test]
    fn long_log_is_compacted_under_a_new_table_id() {
        let mut t = ForwardingTable::new(RoutingTableId([3; 16])).with_log_limit(10);
        t.set("g.a", route("a"));
        t.set("g.b", route("b"));
        t.set("g.c", route("c"));
        // flapping g.a fills the log with superseded slots
        for i in 0..6 {
            let hop = if i % 2 == 0 { "x" } else { "a" };
            assert_eq!(t.set("g.a", route(hop)), Some(3 + i));
        }
        assert_eq!(t.routing_table_id(), RoutingTableId([3; 16]));
        assert_eq!(t.current_epoch(), 9);
        // the tenth entry (a withdrawal) reaches the limit
        assert_eq!(t.set("g.c", None), Some(2));
        assert_ne!(t.routing_table_id(), RoutingTableId([3; 16]));
        assert_eq!(t.current_epoch(), 2);
        let (to, entries) = t.entries_since(0, 50);
        assert_eq!(to, 2);
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.epoch, e.prefix.as_str(), e.route.clone()))
                .collect::<Vec<_>>(),
            vec![(0, "g.a", route("a")), (1, "g.b", route("b"))]
        );
        // logging carries on in the new table, superseding its entries as before
        assert_eq!(t.set("g.b", None), Some(2));
        let (_, entries) = t.entries_since(0, 50);
        assert_eq!(entries.len(), 2);
        // each compaction picks yet another id
        let second = t.routing_table_id();
        for i in 0..10 {
            t.set("g.a", route(if i % 2 == 0 { "y" } else { "x" }));
        }
        assert_ne!(t.routing_table_id(), second);
        assert!(t.current_epoch() < 10);
    }

    #[test]
    fn large_table_is_not_compacted_on_every_change() {
        let mut t = ForwardingTable::new(RoutingTableId::default()).with_log_limit(4);
        for i in 0..10 {
            t.set(&format!("g.p{i}"), route("a"));
        }
        let id = t.routing_table_id();
        let epoch = t.current_epoch();
        // ten routes: the log may grow to twenty before compacting again
        for i in 0..(20 - epoch) {
            assert_eq!(t.routing_table_id(), id, "change {i}");
            t.set("g.p0", route(if i % 2 == 0 { "b" } else { "a" }));
        }
        assert_ne!(t.routing_table_id(), id);
        assert_eq!(t.current_epoch(), 10);
    }

    #[test]
    fn prefixes_under_respects_segments() {
        let mut t = ForwardingTable::new(RoutingTableId::default());
        for p in ["g.a", "g.a.b", "g.ab", "g.a.c.d", "g.b"] {
            t.set(p, route("x"));
        }
        assert_eq!(
            t.prefixes_under("g.a").collect::<Vec<_>>(),
            vec!["g.a", "g.a.b", "g.a.c.d"]
        );
    }
}
