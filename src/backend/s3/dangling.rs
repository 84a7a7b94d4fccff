//! Dangling references: documents whose object is missing. Reported, never deleted.
//!
//! Found with a sorted merge during the sweep's own listing, so they cost no extra LIST
//! request and no memory that grows with the store: ListObjectsV2 returns keys in UTF-8 byte
//! order, and MongoDB compares strings the same way (binary) by default, so one cursor per
//! reference field, sorted and limited to the prefix's key range, advances alongside the
//! listing. A document key that the listing passes without seeing is dangling.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use crate::backend::mongo::Mongo;

/// Example keys kept for the run report.
const EXAMPLES: usize = 20;

struct Field {
    name: String,
    cursor: mongodb::Cursor<Document>,
    /// The next document key of this field, not yet matched.
    peeked: Option<String>,
}

impl Field {
    async fn advance(&mut self) -> Result<(), mongodb::error::Error> {
        self.peeked = None;
        while let Some(d) = self.cursor.try_next().await? {
            if let Some(Bson::String(s)) = d.get(&self.name) {
                self.peeked = Some(s.clone());
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The merge for one prefix.
pub struct DanglingMerge {
    fields: Vec<Field>,
    /// How many dangling references were found.
    pub count: u64,
    /// The first ones.
    pub examples: Vec<String>,
}

/// The smallest string greater than every string starting with `prefix` (`a/` -> `a0`).
fn upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl DanglingMerge {
    /// Opens one sorted cursor per field over the keys under `prefix` (flat-field names only;
    /// dotted paths are skipped, their documents are not merged).
    pub async fn open(
        mongo: &Mongo,
        collection: &str,
        fields: &[String],
        prefix: &str,
    ) -> Result<Self, mongodb::error::Error> {
        let coll = mongo.database().collection::<Document>(collection);
        let mut opened = Vec::new();
        for name in fields.iter().filter(|f| !f.contains('.')) {
            let mut range = doc! { "$type": "string" };
            if !prefix.is_empty() {
                range.insert("$gte", prefix);
                if let Some(upper) = upper_bound(prefix) {
                    range.insert("$lt", upper);
                }
            }
            let cursor = coll
                .find(doc! { name.as_str(): range })
                .projection(doc! { name.as_str(): 1, "_id": 0 })
                .sort(doc! { name.as_str(): 1 })
                .batch_size(crate::backend::mongo::CURSOR_BATCH)
                .await?;
            let mut field = Field {
                name: name.clone(),
                cursor,
                peeked: None,
            };
            field.advance().await?;
            opened.push(field);
        }
        Ok(Self {
            fields: opened,
            count: 0,
            examples: Vec::new(),
        })
    }

    fn dangling(&mut self, key: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(key);
        }
    }

    /// The listing reached `key` (keys must come in listing order).
    pub async fn observe(&mut self, key: &str) -> Result<(), mongodb::error::Error> {
        for i in 0..self.fields.len() {
            while let Some(peeked) = self.fields[i].peeked.clone() {
                match peeked.as_str().cmp(key) {
                    std::cmp::Ordering::Less => {
                        self.dangling(peeked);
                        self.fields[i].advance().await?;
                    }
                    // several documents may reference the same object
                    std::cmp::Ordering::Equal => self.fields[i].advance().await?,
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        Ok(())
    }

    /// The listing ended: every document key left is dangling.
    pub async fn finish(&mut self) -> Result<(), mongodb::error::Error> {
        for i in 0..self.fields.len() {
            while let Some(peeked) = self.fields[i].peeked.clone() {
                self.dangling(peeked);
                self.fields[i].advance().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn upper_bounds_cover_exactly_the_prefix() {
        assert_eq!(
            super::upper_bound("uploads/u1/").as_deref(),
            Some("uploads/u10")
        );
        assert_eq!(super::upper_bound("a").as_deref(), Some("b"));
        assert!("uploads/u1/x" < "uploads/u10" && "uploads/u10/x" >= "uploads/u10");
    }
}
