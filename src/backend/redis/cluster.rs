//! Redis Cluster: the primaries a sweep walks, each over its own standalone connection.
//!
//! SCAN only walks the keys of the node it is sent to, and a cluster node refuses a
//! multi-key command whose keys hash to different slots (CROSSSLOT). So a clustered store is
//! swept primary by primary: SCAN on that primary, and the key scripts run there with the
//! keys passed as arguments (a node lets a script touch its own keys, whatever their slot,
//! and refuses keys it does not hold: a key that moved to another node between planning
//! and applying is failed, never deleted elsewhere). Replicas hold copies and are skipped.

use redis::ConnectionAddr;

use super::{NAME, Redis, info_field};
use crate::backend::{BackendError, timed};

/// The `host:port` of every primary that serves slots, from `CLUSTER NODES`. A primary
/// marked failing is kept: a sweep fails on it rather than skip a part of the store.
pub fn primaries(cluster_nodes: &str) -> Vec<(String, u16)> {
    cluster_nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // id addr flags master ping pong epoch link slot...
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || fields.len() < 9 {
                return None;
            }
            // 127.0.0.1:7000@17000[,hostname]
            let addr = fields[1].split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            let port = port.parse().ok().filter(|p| *p > 0)?;
            Some((host.to_string(), port))
        })
        .collect()
}

/// The primary serving `slot`, from `CLUSTER NODES` (slots being migrated are skipped: the
/// importing side does not serve them yet).
pub fn owner(cluster_nodes: &str, slot: u16) -> Option<(String, u16)> {
    cluster_nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.get(2)?.split(',').any(|f| f == "master") {
            return None;
        }
        let serves = fields.iter().skip(8).any(|range| {
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
        });
        if !serves {
            return None;
        }
        let addr = fields[1].split(['@', ',']).next()?;
        let (host, port) = addr.rsplit_once(':')?;
        Some((host.to_string(), port.parse().ok()?))
    })
}

impl Redis {
    /// The server holding `key`: this one, or the cluster primary serving its slot (for a
    /// single-key protocol such as the leader lease).
    pub async fn node_for_key(&self, key: &str) -> Result<Redis, BackendError> {
        let mut con = self.connection().await?;
        let mut info = redis::cmd("INFO");
        info.arg("cluster");
        let info: String = timed(NAME, self.timeout, info.query_async(&mut con)).await?;
        if info_field(&info, "cluster_enabled") != Some(1) {
            return Ok(self.clone());
        }
        let mut keyslot = redis::cmd("CLUSTER");
        keyslot.arg("KEYSLOT").arg(key);
        let slot: u16 = timed(NAME, self.timeout, keyslot.query_async(&mut con)).await?;
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        let nodes: String = timed(NAME, self.timeout, nodes.query_async(&mut con)).await?;
        let (host, port) = owner(&nodes, slot).ok_or_else(|| {
            BackendError::request(NAME, format!("no primary serves slot {slot} of {key}"))
        })?;
        self.at(host, port)
    }

    /// The servers to sweep: this one, or every primary of its cluster.
    pub async fn shards(&self) -> Result<Vec<Redis>, BackendError> {
        let mut con = self.connection().await?;
        let mut info = redis::cmd("INFO");
        info.arg("cluster");
        let info: String = timed(NAME, self.timeout, info.query_async(&mut con)).await?;
        if info_field(&info, "cluster_enabled") != Some(1) {
            return Ok(vec![self.clone()]);
        }
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        let nodes: String = timed(NAME, self.timeout, nodes.query_async(&mut con)).await?;
        let primaries = primaries(&nodes);
        if primaries.is_empty() {
            return Err(BackendError::request(
                NAME,
                "CLUSTER NODES lists no primary serving slots",
            ));
        }
        primaries
            .into_iter()
            .map(|(host, port)| self.at(host, port))
            .collect()
    }

    /// A client for another node of the same store: same credentials and TLS settings.
    fn at(&self, host: String, port: u16) -> Result<Redis, BackendError> {
        let info = self.client.get_connection_info().clone();
        let addr = match info.addr() {
            ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host.clone(), port),
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            ConnectionAddr::Unix(_) => {
                return Err(BackendError::request(
                    NAME,
                    "a cluster reached over a Unix socket announces TCP nodes: use a redis:// URL",
                ));
            }
            // ConnectionAddr is non-exhaustive
            _ => {
                return Err(BackendError::request(
                    NAME,
                    "unsupported address for a cluster node",
                ));
            }
        };
        let client =
            redis::Client::open(info.set_addr(addr)).map_err(|e| BackendError::request(NAME, e))?;
        Ok(Redis {
            client,
            con: Default::default(),
            timeout: self.timeout,
            shard: Some(format!("{host}:{port}")),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_owner_of_a_slot() {
        let nodes = "\
27e9 127.0.0.1:17003@27003 master - 0 1 3 connected 10923-16383
4f68 127.0.0.1:17002@27002 master - 0 1 2 connected 5461-10921 10922 [10922->-27e9]
2f6e 127.0.0.1:17001@27001 myself,master - 0 1 1 connected 0-5460
9a9a 127.0.0.1:17004@27004 slave 2f6e 0 1 1 connected
";
        let owner = |slot| super::owner(nodes, slot).map(|(_, p)| p);
        assert_eq!(
            [
                owner(0),
                owner(5460),
                owner(5461),
                owner(10922),
                owner(16383)
            ],
            [
                Some(17001),
                Some(17001),
                Some(17002),
                Some(17002),
                Some(17003)
            ]
        );
    }

    #[test]
    fn primaries_serving_slots_only() {
        let nodes = "\
27e9 127.0.0.1:17003@27003 master - 0 1795370196745 3 connected 10923-16383
4f68 127.0.0.1:17002@27002,cache-2 master,fail - 0 1795370195739 2 connected 5461-10922
2f6e 127.0.0.1:17001@27001 myself,master - 0 1795370195000 1 connected 0-5460
9a9a 127.0.0.1:17004@27004 slave 2f6e 0 1795370195000 1 connected
7b7b 127.0.0.1:17005@27005 master - 0 1795370195000 4 connected
0c0c :0@0 master,noaddr - 0 0 5 disconnected 100-200
";
        assert_eq!(
            super::primaries(nodes),
            [
                ("127.0.0.1".to_string(), 17003),
                ("127.0.0.1".to_string(), 17002),
                ("127.0.0.1".to_string(), 17001),
            ]
        );
    }
}
