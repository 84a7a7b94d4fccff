//! Plan before you delete.
//!
//! Every sweep first builds a [`Plan`]: exactly the items it would act on, in batches, each
//! with its reason. Nothing is deleted while planning. The plan is then checked against the
//! [`Cap`] (a fraction of the store and an absolute count): a plan above it is never
//! applied, because a cleaner that suddenly wants to delete a quarter of a store is far more
//! likely to be misconfigured, or looking at a broken reference source, than right.
//!
//! Plans do not live in memory: batches are spooled as JSON lines to an anonymous file
//! (deleted when the plan is dropped) next to the audit log, and read back one at a time to
//! be applied. Memory holds counts and a short sample, so it does not grow with the store,
//! and what is applied is exactly what was planned.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::resource::Resource;

/// Planned items kept in memory as a sample (the spool has them all).
pub const SAMPLE_ITEMS: usize = 20;

/// What happens to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "ttl_secs")]
pub enum Action {
    /// Removed (UNLINK, DeleteObjects, points delete).
    Delete,
    /// Given a TTL; the store removes it later (Redis EXPIRE).
    Expire(u64),
}

/// One item of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedItem {
    /// The key, object key or point id (binary Redis keys escaped, see `backend::redis::keys`).
    pub id: String,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
    /// What goes with it: an object's size, a document's file, points and cache keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ItemDetail>,
}

/// What an item carries beyond its id. An object's size, one per object and thousands per
/// batch, is held as a number: as a JSON map it cost about 300 bytes an item (heaptrack, an
/// S3 sweep of 100k objects, two batches of 8,000 held). Either way it is written
/// `{"bytes": n}`, so the spool, the audit log and the API read the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemDetail {
    /// An object's size when it was planned.
    Bytes(u64),
    /// Anything else: a document's dependents, a Qdrant time window.
    Json(serde_json::Value),
}

impl ItemDetail {
    /// The detail as JSON, when it is not a bare size.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Bytes(_) => None,
            Self::Json(v) => Some(v),
        }
    }
}

impl Serialize for ItemDetail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Bytes(n) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("bytes", n)?;
                map.end()
            }
            Self::Json(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ItemDetail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bytes = v
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.get("bytes")?.as_u64());
        Ok(bytes.map_or(Self::Json(v), Self::Bytes))
    }
}

impl std::fmt::Display for ItemDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bytes(n) => write!(f, "{{\"bytes\":{n}}}"),
            Self::Json(v) => write!(f, "{v}"),
        }
    }
}

impl PlannedItem {
    /// An item removed.
    pub fn delete(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            action: Action::Delete,
            detail: None,
        }
    }

    /// An object removed whose size the listing gave: the audit log and the run's
    /// `bytes_freed` count it once the store confirms the deletion.
    pub fn delete_sized(id: impl Into<String>, bytes: u64) -> Self {
        Self {
            detail: Some(ItemDetail::Bytes(bytes)),
            ..Self::delete(id)
        }
    }

    /// A range of `count` items removed together by one server-side filter (a Qdrant time
    /// window): `detail` says which range, and the plan, the cap and recovery count it as
    /// `count` deletions.
    pub fn delete_range(id: impl Into<String>, count: u64, mut detail: serde_json::Value) -> Self {
        if let Some(map) = detail.as_object_mut() {
            map.insert("count".into(), count.into());
        }
        Self {
            detail: Some(ItemDetail::Json(detail)),
            ..Self::delete(id)
        }
    }

    /// How many store items this item stands for: a range's count, otherwise 1.
    pub fn count(&self) -> u64 {
        self.detail
            .as_ref()
            .and_then(ItemDetail::json)
            .and_then(|d| d.get("count"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1)
    }

    /// The item's size when it was planned, if it was measured.
    pub fn bytes(&self) -> Option<u64> {
        match self.detail.as_ref()? {
            ItemDetail::Bytes(n) => Some(*n),
            ItemDetail::Json(v) => v.get("bytes")?.as_u64(),
        }
    }

    /// An item given a TTL of `secs`.
    pub fn expire(id: impl Into<String>, secs: u64) -> Self {
        Self {
            id: id.into(),
            action: Action::Expire(secs),
            detail: None,
        }
    }
}

/// Items applied together, sharing one reason (one audit record each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Within the resource: `all`, a collection, a key pattern or a prefix.
    pub target: String,
    /// Why these items go, e.g. `no TTL, idle >= 1h (pattern chunk:*)`.
    pub reason: String,
    /// The items.
    pub items: Vec<PlannedItem>,
    /// The server within the store that holds the items, where there are several (a Redis
    /// Cluster primary, `host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// What the batch as a whole carries: the document cascade's `{"points": n}`, the
    /// points its documents had when planned (a batch whose documents have more when it is
    /// applied is left for the next pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// Everything a sweep would do: a summary in memory, the batches in a spool file.
#[derive(Debug)]
pub struct Plan {
    /// The store.
    pub resource: Resource,
    /// Items in the store when planning (for the fraction cap).
    pub store_items: u64,
    /// The TTL the plan used.
    pub ttl: Duration,
    /// Backend facts worth reporting (skipped collections, missing indexes, ...).
    pub notes: Vec<String>,
    /// What the operator must act on: parts of the store the sweep refused to touch
    /// (an unindexed collection too large to scan, a misconfigured field, ...).
    pub warnings: Vec<String>,
    /// Drift between the stores the pass measured (the document pass).
    pub drift: Option<crate::drift::Drift>,
    /// Deletions the plan makes in other stores (a document's file, points and cache keys),
    /// each held to the cap of its own store.
    pub dependents: Vec<Dependent>,
    deletions: u64,
    expirations: u64,
    batch_count: usize,
    sample: Vec<PlannedItem>,
    spool: BufWriter<File>,
}

impl Plan {
    /// An empty plan spooling to an anonymous file in `spool_dir`.
    pub fn new(resource: Resource, ttl: Duration, spool_dir: &Path) -> io::Result<Self> {
        Ok(Self {
            resource,
            store_items: 0,
            ttl,
            notes: Vec::new(),
            warnings: Vec::new(),
            drift: None,
            dependents: Vec::new(),
            deletions: 0,
            expirations: 0,
            batch_count: 0,
            sample: Vec::new(),
            spool: BufWriter::new(tempfile::tempfile_in(spool_dir)?),
        })
    }

    /// Appends a batch.
    pub fn push(&mut self, batch: Batch) -> io::Result<()> {
        for item in &batch.items {
            match item.action {
                Action::Delete => self.deletions += item.count(),
                Action::Expire(_) => self.expirations += item.count(),
            }
            if self.sample.len() < SAMPLE_ITEMS {
                self.sample.push(item.clone());
            }
        }
        serde_json::to_writer(&mut self.spool, &batch)?;
        self.spool.write_all(b"\n")?;
        self.batch_count += 1;
        Ok(())
    }

    /// Appends a batch deleting `ids` of `target` for `reason` (nothing when there are none).
    pub fn push_deletes(&mut self, target: &str, reason: &str, ids: Vec<String>) -> io::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.push(Batch {
            target: target.to_string(),
            reason: reason.to_string(),
            items: ids.into_iter().map(PlannedItem::delete).collect(),
            shard: None,
            detail: None,
        })
    }

    /// Items the plan deletes.
    pub fn deletions(&self) -> u64 {
        self.deletions
    }

    /// Items the plan gives a TTL.
    pub fn expirations(&self) -> u64 {
        self.expirations
    }

    /// Number of batches.
    pub fn batch_count(&self) -> usize {
        self.batch_count
    }

    /// The first planned items.
    pub fn sample(&self) -> &[PlannedItem] {
        &self.sample
    }

    /// Reads the batches back, in order, one at a time.
    pub fn batches(&mut self) -> io::Result<impl Iterator<Item = io::Result<Batch>> + use<>> {
        self.spool.flush()?;
        let mut file = self.spool.get_ref().try_clone()?;
        file.rewind()?;
        Ok(BufReader::new(file).lines().map(|line| {
            let line = line?;
            serde_json::from_str(&line).map_err(io::Error::other)
        }))
    }

    /// Every planned item (reads the whole spool: for reports and tests).
    pub fn items(&mut self) -> io::Result<Vec<PlannedItem>> {
        let mut items = Vec::new();
        for batch in self.batches()? {
            items.extend(batch?.items);
        }
        Ok(items)
    }
}

/// What a plan deletes in a store other than its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    /// The store.
    pub resource: Resource,
    /// Items the plan deletes there.
    pub deletions: u64,
    /// Items in that store, where known; unknown, only the absolute cap applies.
    pub store_items: Option<u64>,
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
    "plan deletes {deletions} of {} items{}, above the cap ({limit} = min({max_count}, {max_fraction} of the store))",
    .store_items.map_or_else(|| "an unknown number of".to_string(), |n| n.to_string()),
    .store.map(|r| format!(" of {r} (dependents of the documents)")).unwrap_or_default()
)]
pub struct CapExceeded {
    /// Deletions planned.
    pub deletions: u64,
    /// Items in the store, where known.
    pub store_items: Option<u64>,
    /// The limit that applied.
    pub limit: u64,
    /// The absolute cap.
    pub max_count: u64,
    /// The fractional cap.
    pub max_fraction: f64,
    /// The other store whose cap the plan's dependents exceed; `None`: the plan's own store.
    pub store: Option<Resource>,
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

    /// Whether `plan` may be applied: its own deletions, and its deletions in every other
    /// store, each within the cap of its store.
    pub fn check(&self, plan: &Plan) -> Result<(), CapExceeded> {
        let own = (None, plan.deletions(), Some(plan.store_items));
        let others = plan
            .dependents
            .iter()
            .map(|d| (Some(d.resource), d.deletions, d.store_items));
        for (store, deletions, store_items) in std::iter::once(own).chain(others) {
            // a store of unknown size is held to the absolute cap only
            let limit = store_items.map_or(self.max_count, |n| self.limit(n));
            if deletions > limit {
                return Err(CapExceeded {
                    deletions,
                    store_items,
                    limit,
                    max_count: self.max_count,
                    max_fraction: self.max_fraction,
                    store,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: u64, deletes: usize, expires: usize) -> Plan {
        let mut p = Plan::new(
            Resource::Redis,
            Duration::from_secs(3600),
            &std::env::temp_dir(),
        )
        .unwrap();
        p.store_items = store;
        let mut items: Vec<PlannedItem> = (0..deletes)
            .map(|i| PlannedItem {
                id: format!("d{i}"),
                action: Action::Delete,
                detail: None,
            })
            .collect();
        items.extend((0..expires).map(|i| PlannedItem {
            id: format!("e{i}"),
            action: Action::Expire(3600),
            detail: None,
        }));
        p.push(Batch {
            target: "all".into(),
            reason: "test".into(),
            items,
            shard: None,
            detail: None,
        })
        .unwrap();
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
    fn spooled_batches_read_back_exactly() {
        let mut p = plan(10, 30, 2);
        p.push(Batch {
            target: "second".into(),
            reason: "r2".into(),
            items: vec![PlannedItem {
                id: "a\\xffb".into(),
                action: Action::Delete,
                detail: None,
            }],
            shard: None,
            detail: None,
        })
        .unwrap();
        assert_eq!(
            (p.deletions(), p.expirations(), p.batch_count()),
            (31, 2, 2)
        );
        assert_eq!(p.sample().len(), SAMPLE_ITEMS);
        let batches: Vec<Batch> = p.batches().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].items.len(), 32);
        assert_eq!(batches[0].items[31].action, Action::Expire(3600));
        assert_eq!(batches[1].items[0].id, "a\\xffb");
        // reading twice gives the same plan (the CLI prints it after the engine applied it)
        assert_eq!(p.items().unwrap().len(), 33);
    }

    #[test]
    fn an_objects_size_is_held_as_a_number_and_written_as_before() {
        let sized = PlannedItem::delete_sized("uploads/a.pdf", 64);
        let line = serde_json::to_string(&sized).unwrap();
        assert_eq!(
            line,
            r#"{"id":"uploads/a.pdf","action":"delete","detail":{"bytes":64}}"#
        );
        let back: PlannedItem = serde_json::from_str(&line).unwrap();
        assert_eq!(back.detail, Some(ItemDetail::Bytes(64)));
        assert_eq!((back.bytes(), back.count()), (Some(64), 1));
        assert_eq!(sized.detail.unwrap().to_string(), r#"{"bytes":64}"#);
        // anything more than a size stays JSON, whole
        for other in [
            r#"{"bytes":64,"points":3}"#,
            r#"{"bytes":-1}"#,
            r#"{"count":5}"#,
        ] {
            let d: ItemDetail = serde_json::from_str(other).unwrap();
            assert!(d.json().is_some(), "{other}");
            assert_eq!(d.to_string(), other);
        }
    }

    #[test]
    fn a_range_counts_as_its_items() {
        let mut p = plan(1000, 0, 0);
        let window = serde_json::json!({ "from": null, "until": "2026-11-29T00:00:00Z" });
        p.push(Batch {
            target: "c".into(),
            reason: "r".into(),
            items: vec![PlannedItem::delete_range("c:t<x", 400, window)],
            shard: None,
            detail: None,
        })
        .unwrap();
        assert_eq!(p.deletions(), 400);
        let err = CAP.check(&p).unwrap_err();
        assert_eq!((err.deletions, err.limit), (400, 250));
        assert_eq!(PlannedItem::delete("k").count(), 1);
    }

    #[test]
    fn a_plans_deletions_in_other_stores_are_held_to_their_caps() {
        let mut p = plan(1000, 10, 0);
        let dependent = |resource, deletions, store_items| Dependent {
            resource,
            deletions,
            store_items,
        };
        p.dependents = vec![
            dependent(Resource::S3, 250, Some(1000)),
            dependent(Resource::Redis, 1000, None),
        ];
        assert!(
            CAP.check(&p).is_ok(),
            "a quarter of S3, the absolute cap of Redis"
        );
        p.dependents
            .push(dependent(Resource::Qdrant, 26, Some(100)));
        let err = CAP.check(&p).unwrap_err();
        assert_eq!(
            (err.store, err.deletions, err.limit),
            (Some(Resource::Qdrant), 26, 25)
        );
        assert!(err.to_string().contains("of qdrant (dependents"), "{err}");
        p.dependents[2].deletions = 25;
        p.dependents[1].deletions = 1001;
        let err = CAP.check(&p).unwrap_err();
        assert_eq!(err.store, Some(Resource::Redis));
        assert!(
            err.to_string()
                .contains("1001 of an unknown number of items"),
            "{err}"
        );
    }

    #[test]
    fn empty_store_allows_nothing_but_an_empty_plan() {
        assert!(CAP.check(&plan(0, 0, 0)).is_ok());
        assert!(CAP.check(&plan(0, 1, 0)).is_err());
        assert!(CAP.check(&plan(3, 1, 0)).is_err(), "floor(0.75) = 0");
    }
}
