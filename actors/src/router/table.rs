//! Where the Router sends an address: one longest-prefix table merged from the routes the node
//! knows itself (the default route, the configured static routes, its children's addresses)
//! and the routes the RouteBroadcaster learned. For the same prefix a local route beats a
//! learned one; otherwise the longest prefix wins, as in the JS connector's routing table.

use crate::messages::{AccountId, RouteEntry, RouteKind};
use ilp::packet::Address;
use ilp::routing::{prefix_matches, RoutingTable};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Why no next hop was found; every case is rejected F02.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoRoute {
    #[error("no route found for {0}")]
    NoMatch(String),
    /// Under our own address, but no child or configured route covers it: the only place it
    /// could be is here, and nothing here answers it.
    #[error("no local account at {0}")]
    NoLocalAccount(String),
    #[error("refusing to route payments back to sender {0}")]
    Reflected(AccountId),
}

#[derive(Debug, Clone)]
pub struct Routes {
    default_route: Option<AccountId>,
    static_routes: Vec<(String, AccountId)>,
    /// Child accounts by address segment.
    children: Vec<(String, AccountId)>,
    own_address: Option<Address>,
    /// Prefixes the node knows itself, with their precedence already applied.
    local: HashMap<String, AccountId>,
    learned: HashMap<String, AccountId>,
    /// `learned` overlaid with `local`: what lookups read.
    table: RoutingTable<AccountId>,
}

impl Routes {
    pub fn new(
        default_route: Option<AccountId>,
        static_routes: Vec<(String, AccountId)>,
        children: Vec<(String, AccountId)>,
        own_address: Option<Address>,
    ) -> Self {
        let mut routes = Routes {
            default_route,
            static_routes,
            children,
            own_address,
            local: HashMap::new(),
            learned: HashMap::new(),
            table: RoutingTable::new(),
        };
        routes.rebuild();
        routes
    }

    /// Recomputes the local routes and the merged table from their sources.
    pub fn rebuild(&mut self) {
        let mut local = HashMap::new();
        if let Some(account) = &self.default_route {
            local.insert(String::new(), account.clone());
        }
        // Later inserts win: a static route beats the default route for "", and a child's own
        // address beats a static route for the same prefix.
        for (prefix, account) in &self.static_routes {
            local.insert(prefix.clone(), account.clone());
        }
        if let Some(own) = &self.own_address {
            for (segment, account) in &self.children {
                if let Ok(address) = own.with_suffix(segment) {
                    local.insert(address.as_str().to_string(), account.clone());
                }
            }
        }
        let mut table = RoutingTable::new();
        for (prefix, account) in &self.learned {
            table.insert(prefix.clone(), account.clone());
        }
        for (prefix, account) in &local {
            table.insert(prefix.clone(), account.clone());
        }
        self.local = local;
        self.table = table;
    }

    /// New local route sources after a reload. Learned routes through accounts `keep` rejects
    /// (removed accounts) are dropped; the others stay until the broadcaster updates them.
    pub fn reconfigure(
        &mut self,
        default_route: Option<AccountId>,
        static_routes: Vec<(String, AccountId)>,
        children: Vec<(String, AccountId)>,
        keep: impl Fn(&AccountId) -> bool,
    ) {
        self.default_route = default_route;
        self.static_routes = static_routes;
        self.children = children;
        self.learned.retain(|_, account| keep(account));
        self.rebuild();
    }

    /// Our address changed: children's routes move under the new one.
    pub fn set_own_address(&mut self, address: Option<Address>) {
        self.own_address = address;
        self.rebuild();
    }

    /// Sets (`Some`) or withdraws (`None`) the learned route for `prefix`. A local route for
    /// the same prefix keeps precedence either way.
    pub fn apply_learned(&mut self, prefix: String, next_hop: Option<AccountId>) {
        match next_hop {
            Some(account) => {
                if !self.local.contains_key(&prefix) {
                    self.table.insert(prefix.clone(), account.clone());
                }
                self.learned.insert(prefix, account);
            }
            None => {
                if self.learned.remove(&prefix).is_some() && !self.local.contains_key(&prefix) {
                    self.table.remove(&prefix);
                }
            }
        }
    }

    /// The account to forward a packet for `destination` that came from `from` to.
    pub fn next_hop(
        &self,
        from: &str,
        destination: &str,
        reflect_payments: bool,
    ) -> Result<&AccountId, NoRoute> {
        let (prefix, account) = self
            .table
            .lookup(destination)
            .ok_or_else(|| NoRoute::NoMatch(destination.to_string()))?;
        if let Some(own) = &self.own_address {
            // A route that only covers our address from above (a parent's default route,
            // say) would send the packet back up to where it is meant to end.
            if prefix_matches(own.as_str(), destination) && !prefix_matches(own.as_str(), prefix) {
                return Err(NoRoute::NoLocalAccount(destination.to_string()));
            }
        }
        if !reflect_payments && **account == *from {
            return Err(NoRoute::Reflected(account.clone()));
        }
        Ok(account)
    }

    /// Every prefix of the merged table with its next hop and where it comes from, by prefix.
    pub fn entries(&self) -> Vec<RouteEntry> {
        // Inserted in `rebuild`'s precedence order, so later sources replace earlier ones.
        let mut out: BTreeMap<&str, (&AccountId, RouteKind)> = BTreeMap::new();
        for (prefix, account) in &self.learned {
            out.insert(prefix, (account, RouteKind::Learned));
        }
        if let Some(account) = &self.default_route {
            out.insert("", (account, RouteKind::Default));
        }
        for (prefix, account) in &self.static_routes {
            out.insert(prefix, (account, RouteKind::Static));
        }
        let children: Vec<(String, &AccountId)> = match &self.own_address {
            Some(own) => self
                .children
                .iter()
                .filter_map(|(segment, account)| {
                    Some((own.with_suffix(segment).ok()?.as_str().to_owned(), account))
                })
                .collect(),
            None => Vec::new(),
        };
        for (prefix, account) in &children {
            out.insert(prefix, (account, RouteKind::Child));
        }
        out.into_iter()
            .map(|(prefix, (account, kind))| RouteEntry {
                prefix: prefix.to_owned(),
                account: account.clone(),
                kind,
            })
            .collect()
    }

    /// Sets the static route for `prefix` (replacing one for the same prefix).
    pub fn set_static(&mut self, prefix: String, account: AccountId) {
        match self.static_routes.iter_mut().find(|(p, _)| *p == prefix) {
            Some(route) => route.1 = account,
            None => self.static_routes.push((prefix, account)),
        }
        self.rebuild();
    }

    /// Removes the static route for `prefix`; false when there was none.
    pub fn remove_static(&mut self, prefix: &str) -> bool {
        let before = self.static_routes.len();
        self.static_routes.retain(|(p, _)| p != prefix);
        let removed = self.static_routes.len() != before;
        if removed {
            self.rebuild();
        }
        removed
    }

    /// Number of prefixes in the merged table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> AccountId {
        AccountId::from(s)
    }

    fn addr(s: &str) -> Address {
        Address::try_from(s).unwrap()
    }

    fn routes() -> Routes {
        Routes::new(
            Some(id("parent")),
            vec![("g.static".into(), id("bob"))],
            vec![("alice".into(), id("alice"))],
            Some(addr("test.node")),
        )
    }

    fn hop<'a>(r: &'a Routes, dest: &str) -> Result<&'a str, NoRoute> {
        r.next_hop("someone", dest, true).map(|a| &**a)
    }

    #[test]
    fn longest_learned_prefix_wins() {
        let mut r = routes();
        r.apply_learned("g.a".into(), Some(id("bob")));
        r.apply_learned("g.a.b".into(), Some(id("carl")));
        assert_eq!(hop(&r, "g.a.b.c"), Ok("carl"));
        assert_eq!(hop(&r, "g.a.x"), Ok("bob"));
        assert_eq!(hop(&r, "g.ab"), Ok("parent"));
    }

    #[test]
    fn static_beats_learned_for_the_same_prefix() {
        let mut r = routes();
        r.apply_learned("g.static".into(), Some(id("carl")));
        assert_eq!(hop(&r, "g.static.x"), Ok("bob"));
        // Withdrawing the learned route leaves the static one in place.
        r.apply_learned("g.static".into(), None);
        assert_eq!(hop(&r, "g.static.x"), Ok("bob"));
        // A longer learned prefix is more specific and wins.
        r.apply_learned("g.static.deeper".into(), Some(id("carl")));
        assert_eq!(hop(&r, "g.static.deeper.x"), Ok("carl"));
    }

    #[test]
    fn children_route_under_our_address_and_follow_it() {
        let mut r = routes();
        assert_eq!(hop(&r, "test.node.alice"), Ok("alice"));
        assert_eq!(hop(&r, "test.node.alice.wallet"), Ok("alice"));
        r.set_own_address(Some(addr("test.moved")));
        assert_eq!(hop(&r, "test.moved.alice.x"), Ok("alice"));
        assert_eq!(hop(&r, "test.node.alice.x"), Ok("parent"));
    }

    #[test]
    fn no_children_before_we_have_an_address() {
        let r = Routes::new(None, vec![], vec![("alice".into(), id("alice"))], None);
        assert!(r.is_empty());
        assert_eq!(
            hop(&r, "test.node.alice"),
            Err(NoRoute::NoMatch("test.node.alice".into()))
        );
    }

    #[test]
    fn unknown_address_under_ours_is_not_sent_up() {
        let r = routes();
        assert_eq!(
            hop(&r, "test.node.nobody"),
            Err(NoRoute::NoLocalAccount("test.node.nobody".into()))
        );
        assert_eq!(hop(&r, "test.nodex"), Ok("parent"));
    }

    #[test]
    fn default_route_then_nothing() {
        let r = routes();
        assert_eq!(hop(&r, "private.x"), Ok("parent"));
        let r = Routes::new(None, vec![], vec![], None);
        assert_eq!(
            hop(&r, "private.x"),
            Err(NoRoute::NoMatch("private.x".into()))
        );
    }

    #[test]
    fn reflection_refused_only_when_disabled() {
        let r = routes();
        assert_eq!(
            r.next_hop("bob", "g.static.x", true).map(|a| &**a),
            Ok("bob")
        );
        assert_eq!(
            r.next_hop("bob", "g.static.x", false),
            Err(NoRoute::Reflected(id("bob")))
        );
    }

    #[test]
    fn entries_name_their_source_and_hide_shadowed_learned_routes() {
        let mut r = routes();
        r.apply_learned("g.static".into(), Some(id("carl")));
        r.apply_learned("g.learned".into(), Some(id("carl")));
        let entries: Vec<(String, String, &str)> = r
            .entries()
            .into_iter()
            .map(|e| (e.prefix, e.account.to_string(), e.kind.as_str()))
            .collect();
        let e = |p: &str, a: &str, k| (p.to_owned(), a.to_owned(), k);
        assert_eq!(
            entries,
            vec![
                e("", "parent", "default"),
                e("g.learned", "carl", "learned"),
                e("g.static", "bob", "static"),
                e("test.node.alice", "alice", "child"),
            ]
        );
    }

    #[test]
    fn static_routes_change_at_run_time() {
        let mut r = routes();
        r.set_static("g.new".into(), id("carl"));
        assert_eq!(hop(&r, "g.new.x"), Ok("carl"));
        r.set_static("g.new".into(), id("bob"));
        assert_eq!(hop(&r, "g.new.x"), Ok("bob"));
        assert!(r.remove_static("g.new"));
        assert!(!r.remove_static("g.new"));
        assert_eq!(hop(&r, "g.new.x"), Ok("parent"));
        // A learned route under a removed static one comes back.
        r.apply_learned("g.static".into(), Some(id("carl")));
        assert!(r.remove_static("g.static"));
        assert_eq!(hop(&r, "g.static.x"), Ok("carl"));
    }

    #[test]
    fn learned_withdrawal_and_rebuild_keep_learned_routes() {
        let mut r = routes();
        r.apply_learned("g.x".into(), Some(id("carl")));
        r.rebuild();
        assert_eq!(hop(&r, "g.x.y"), Ok("carl"));
        r.apply_learned("g.x".into(), None);
        assert_eq!(hop(&r, "g.x.y"), Ok("parent"));
        // Withdrawing what was never learned is a no-op.
        r.apply_learned("g.static".into(), None);
        assert_eq!(hop(&r, "g.static"), Ok("bob"));
        assert_eq!(r.len(), 3);
    }
}
