//! Listing a bucket: one sorted stream of ListObjectsV2 pages, fetched ahead and, where the
//! layout allows, in parallel across the prefixes under the delimiter.
//!
//! A listing is a chain of round trips (each page names the next). On a bucket laid out as
//! `user/file`, the keys under each `user/` can be listed at the same time: the prefix is
//! listed once with the delimiter `/`, and then up to `parallelism` of its sub-prefixes are
//! listed at once, each by its own task two pages ahead. Their pages are handed on in key
//! order, sub-prefix after sub-prefix, with the objects of the prefix itself in between at
//! their place (an object `a.txt` comes before every key under `a/`, and `b` after), so the
//! stream is exactly the single sorted listing: the sweep's merge against the sorted
//! references (the dangling-reference report) needs nothing else. Memory stays bounded:
//! at most `parallelism` parts are held ahead, each at most three pages.
//!
//! With one sub-prefix and nothing else under a prefix (`uploads/`), the fan-out goes one
//! level down, up to three levels.

use std::collections::VecDeque;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::types::Object;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use super::{NAME, S3};
use crate::backend::BackendError;

/// Levels the fan-out descends through a lone sub-prefix.
const MAX_DESCENT: usize = 3;

/// What the listing task sends: a page, the end (`Ok(None)`), or the error that ended it.
pub type Page = Result<Option<ListObjectsV2Output>, BackendError>;

/// One part of a fanned-out listing, in key order.
enum Part {
    /// Objects directly under the listed prefix.
    Objects(Vec<Object>),
    /// A sub-prefix, being listed by its own task.
    Listing(Receiver<Page>),
}

/// A part not started yet: objects, or a sub-prefix to list.
enum Next {
    Objects(Vec<Object>),
    Prefix(String),
}

/// The objects and sub-prefixes of one delimiter page, merged in key order.
fn merge(page: ListObjectsV2Output) -> Vec<Next> {
    let mut objects = page.contents.unwrap_or_default().into_iter().peekable();
    let mut prefixes = page
        .common_prefixes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.prefix)
        .peekable();
    let mut out = Vec::new();
    let mut run = Vec::new();
    loop {
        let object_first = match (objects.peek(), prefixes.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(o), Some(p)) => o.key().unwrap_or_default() < p.as_str(),
        };
        if object_first {
            run.extend(objects.next());
        } else {
            if !run.is_empty() {
                out.push(Next::Objects(std::mem::take(&mut run)));
            }
            out.extend(prefixes.next().map(Next::Prefix));
        }
    }
    if !run.is_empty() {
        out.push(Next::Objects(run));
    }
    out
}

impl S3 {
    /// One page of `prefix` listed with the delimiter `/`, from `token`.
    async fn delimited(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<ListObjectsV2Output, BackendError> {
        let req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send();
        match tokio::time::timeout(self.timeout, req).await {
            Err(_) => Err(BackendError::Timeout {
                backend: NAME,
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(BackendError::request(NAME, DisplayErrorContext(&e))),
            // a page that says more follows without saying where would end the listing early
            Ok(Ok(page))
                if page.is_truncated == Some(true) && page.next_continuation_token.is_none() =>
            {
                Err(BackendError::request(
                    NAME,
                    "a truncated listing page without a continuation token",
                ))
            }
            Ok(Ok(page)) => Ok(page),
        }
    }

    /// The listing of `prefix` with up to `parallelism` sub-prefixes listed at once (see the
    /// module), sent to `tx` in key order; returns when done, on error, or when `tx` closes.
    pub(super) async fn fan_out(&self, prefix: &str, parallelism: usize, tx: Sender<Page>) {
        if let Err(e) = self.fan_out_inner(prefix, parallelism, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn fan_out_inner(
        &self,
        prefix: &str,
        parallelism: usize,
        tx: &Sender<Page>,
    ) -> Result<(), BackendError> {
        let mut prefix = prefix.to_string();
        let mut first = self.delimited(&prefix, None).await?;
        for _ in 0..MAX_DESCENT {
            let lone = match (first.contents(), first.common_prefixes()) {
                ([], [only]) if first.next_continuation_token.is_none() => only.prefix.clone(),
                _ => None,
            };
            let Some(lone) = lone else { break };
            prefix = lone;
            first = self.delimited(&prefix, None).await?;
        }
        let mut token = first.next_continuation_token.clone();
        let mut upcoming: VecDeque<Next> = merge(first).into();
        let mut ahead: VecDeque<Part> = VecDeque::new();
        loop {
            // keep up to `parallelism` parts started ahead of the one being handed on
            while ahead.len() < parallelism {
                // a page may hold nothing and still name a next one: fetch until there is
                // something to start or the level's listing ends
                while upcoming.is_empty()
                    && let Some(t) = token.take()
                {
                    let page = self.delimited(&prefix, Some(t)).await?;
                    token = page.next_continuation_token.clone();
                    upcoming.extend(merge(page));
                }
                match upcoming.pop_front() {
                    Some(Next::Objects(objects)) => ahead.push_back(Part::Objects(objects)),
                    Some(Next::Prefix(p)) => ahead.push_back(Part::Listing(self.sequential(&p))),
                    None => break,
                }
            }
            let Some(part) = ahead.pop_front() else {
                if token.is_some() {
                    // never reached; if it were, a truncated listing must not read as whole
                    return Err(BackendError::request(
                        NAME,
                        "listing ended before its last page",
                    ));
                }
                let _ = tx.send(Ok(None)).await;
                return Ok(());
            };
            match part {
                Part::Objects(objects) => {
                    let page = ListObjectsV2Output::builder()
                        .set_contents(Some(objects))
                        .build();
                    if tx.send(Ok(Some(page))).await.is_err() {
                        return Ok(());
                    }
                }
                Part::Listing(mut rx) => loop {
                    match rx.recv().await {
                        Some(Ok(Some(page))) => {
                            if tx.send(Ok(Some(page))).await.is_err() {
                                return Ok(());
                            }
                        }
                        Some(Ok(None)) => break,
                        Some(Err(e)) => return Err(e),
                        None => {
                            return Err(BackendError::request(
                                NAME,
                                "a sub-prefix listing ended without its last page",
                            ));
                        }
                    }
                },
            }
        }
    }

    /// The plain listing of `prefix` (no delimiter), by a task two pages ahead.
    pub(super) fn sequential(&self, prefix: &str) -> Receiver<Page> {
        let (tx, rx) = channel(2);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let timeout = self.timeout;
        tokio::spawn(async move {
            loop {
                let page = match tokio::time::timeout(timeout, pages.next()).await {
                    Err(_) => Err(BackendError::Timeout {
                        backend: NAME,
                        after: timeout,
                    }),
                    Ok(None) => Ok(None),
                    Ok(Some(page)) => page
                        .map(Some)
                        .map_err(|e| BackendError::request(NAME, DisplayErrorContext(&e))),
                };
                let last = !matches!(page, Ok(Some(_)));
                if tx.send(page).await.is_err() || last {
                    return;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::types::CommonPrefix;

    fn page(objects: &[&str], prefixes: &[&str]) -> ListObjectsV2Output {
        ListObjectsV2Output::builder()
            .set_contents(Some(
                objects
                    .iter()
                    .map(|k| Object::builder().key(*k).build())
                    .collect(),
            ))
            .set_common_prefixes(Some(
                prefixes
                    .iter()
                    .map(|p| CommonPrefix::builder().prefix(*p).build())
                    .collect(),
            ))
            .build()
    }

    fn shape(parts: Vec<Next>) -> Vec<String> {
        parts
            .into_iter()
            .map(|n| match n {
                Next::Objects(o) => o
                    .iter()
                    .map(|o| o.key().unwrap())
                    .collect::<Vec<_>>()
                    .join("+"),
                Next::Prefix(p) => format!("[{p}]"),
            })
            .collect()
    }

    #[test]
    fn objects_and_sub_prefixes_keep_the_single_listings_order() {
        // "a.txt" < "a/..." ('.' < '/') and "a0" > "a/..." ('0' > '/')
        let merged = merge(page(&["a.txt", "a0", "b", "c"], &["a/", "b/"]));
        assert_eq!(shape(merged), ["a.txt", "[a/]", "a0+b", "[b/]", "c"]);
        assert_eq!(shape(merge(page(&[], &["x/", "y/"]))), ["[x/]", "[y/]"]);
        assert_eq!(shape(merge(page(&["k"], &[]))), ["k"]);
    }
}
