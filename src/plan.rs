//! Plan before you delete.
//!
//! Every sweep first builds a [`Plan`]: exactly the items it would act on, in batches, each
//! with its reason. Nothing is deleted while planning. The plan is then checked against the
//! [`Cap`] (a fraction of the store and an absolute count): a plan above it is never
//! applied, because a cleaner that suddenly wants to delete a quarter of a store is far more
//! likely to be misconfigured, or looking at a broken reference source, than right.
//!
//! Plans are bounded: a planner stops collecting once it holds more deletions than the cap
//! allows ([`Cap::planning_limit`]), since such a plan will be refused anyway. Memory follows
//! the cap, not the size of the store.

use std::time::Duration;

use serde::Serialize;

use crate::resource::Resource;

/// What happens to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "ttl_secs")]
pub enum Action {
    /// Removed (UNLINK, DeleteObjects, points delete).
    Delete,
    /// Given a TTL; the store removes it later (Redis EXPIRE).
    Expire(u64),
}

/// One item of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedItem {
    /// The key, object key or point id (lossy UTF-8 for binary Redis keys).
    pub id: String,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
}

/// Items applied together, sharing one reason (one audit record each).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Batch {
    /// Within the resource: `all`, a collection, a key pattern or a prefix.
    pub target: String,
    /// Why these items go, e.g. `no TTL, idle >= 1h (pattern chunk:*)`.
    pub reason: String,
    /// The items.
    pub items: Vec<PlannedItem>,
}

/// Everything a sweep would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The store.
    pub resource: Resource,
    /// Items in the store when planning (for the fraction cap).
    pub store_items: u64,
    /// The TTL the plan used.
    #[serde(rename = "ttl_secs", serialize_with = "secs")]
    pub ttl: Duration,
    /// The batches, in apply order.
    pub batches: Vec<Batch>,
    /// Backend facts worth reporting (skipped collections, missing indexes, ...).
    pub notes: Vec<String>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Plan {
    /// An empty plan.
    pub fn new(resource: Resource, ttl: Duration) -> Self {
        Self {
            resource,
            store_items: 0,
            ttl,
            batches: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Items the plan deletes.
    pub fn deletions(&self) -> u64 {
        self.count(|a| matches!(a, Action::Delete))
    }

    /// Items the plan gives a TTL.
    pub fn expirations(&self) -> u64 {
        self.count(|a| matches!(a, Action::Expire(_)))
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> u64 {
        self.batches
            .iter()
            .flat_map(|b| &b.items)
            .filter(|i| f(&i.action))
            .count() as u64
    }

    /// Every item, in order.
    pub fn items(&self) -> impl Iterator<Item = &PlannedItem> {
        self.batches.iter().flat_map(|b| &b.items)
    }
}

/// The per-run deletion cap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cap {
    /// Largest fraction of the store one run may delete.
    pub max_fraction: f64,
    /// Largest number of items one run may delete.
    pub max_count: u64,
}

/// A plan the cap refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "plan deletes {deletions} of {store_items} items, above the cap ({limit} = min({max_count}, {max_fraction} of the store))"
)]
pub struct CapExceeded {
    /// Deletions planned.
    pub deletions: u64,
    /// Items in the store.
    pub store_items: u64,
    /// The limit that applied.
    pub limit: u64,
    /// The absolute cap.
    pub max_count: u64,
    /// The fractional cap.
    pub max_fraction: f64,
}

impl Cap {
    /// Most deletions allowed in a store of `store_items` items.
    pub fn limit(&self, store_items: u64) -> u64 {
        let by_fraction = (self.max_fraction * store_items as f64).floor() as u64;
        by_fraction.min(self.max_count)
    }

    /// Planners stop collecting past this many deletions: the plan would be refused anyway.
    pub fn planning_limit(&self) -> u64 {
        self.max_count.saturating_add(1)
    }

    /// Whether `plan` may be applied.
    pub fn check(&self, plan: &Plan) -> Result<(), CapExceeded> {
        let deletions = plan.deletions();
        let limit = self.limit(plan.store_items);
        if deletions <= limit {
            Ok(())
        } else {
            Err(CapExceeded {
                deletions,
                store_items: plan.store_items,
                limit,
                max_count: self.max_count,
                max_fraction: self.max_fraction,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: u64, deletes: usize, expires: usize) -> Plan {
        let mut p = Plan::new(Resource::Redis, Duration::from_secs(3600));
        p.store_items = store;
        let mut items: Vec<PlannedItem> = (0..deletes)
            .map(|i| PlannedItem {
                id: format!("d{i}"),
                action: Action::Delete,
            })
            .collect();
        items.extend((0..expires).map(|i| PlannedItem {
            id: format!("e{i}"),
            action: Action::Expire(3600),
        }));
        p.batches.push(Batch {
            target: "all".into(),
            reason: "test".into(),
            items,
        });
        p
    }

    const CAP: Cap = Cap {
        max_fraction: 0.25,
        max_count: 1000,
    };

    #[test]
    fn fraction_cap_refuses_above_a_quarter() {
        assert!(CAP.check(&plan(100, 25, 0)).is_ok());
        let err = CAP.check(&plan(100, 26, 0)).unwrap_err();
        assert_eq!((err.deletions, err.limit), (26, 25));
        assert!(err.to_string().contains("26 of 100"));
    }

    #[test]
    fn absolute_cap_applies_to_big_stores() {
        assert!(CAP.check(&plan(1_000_000, 1000, 0)).is_ok());
        assert_eq!(
            CAP.check(&plan(1_000_000, 1001, 0)).unwrap_err().limit,
            1000
        );
    }

    #[test]
    fn expirations_do_not_count_as_deletions() {
        // a cache where every key lacks a TTL still gets its TTLs
        assert!(CAP.check(&plan(100, 0, 100)).is_ok());
        assert_eq!(plan(100, 3, 4).expirations(), 4);
    }

    #[test]
    fn empty_store_allows_nothing_but_an_empty_plan() {
        assert!(CAP.check(&plan(0, 0, 0)).is_ok());
        assert!(CAP.check(&plan(0, 1, 0)).is_err());
        assert!(CAP.check(&plan(3, 1, 0)).is_err(), "floor(0.75) = 0");
    }
}
