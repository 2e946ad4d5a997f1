//! The soak's write mix and the paced driver that sends it to one node through the app RPC.
//!
//! The table holds `keys` keys of 16 bytes (`soak-00000000042`). The first tenth (at least
//! one) are *shared*: every node writes them, so they conflict. The rest are split among the
//! nodes (key `k` belongs to node `k % nodes`). Each write is drawn as: 80% a put of a random
//! value on one of the node's own keys, 10% a put on a shared key, 10% a delete of an own key
//! the node has put and not deleted since (a put when it has none). Every write is one
//! `Table.put` or `Table.delete` call, one durable commit.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::rpc::client::remote_error;
use crate::schema::service_capnp::table;

/// Calls one driver keeps in flight at most; beyond that, due writes wait (and count as
/// lag).
const MAX_IN_FLIGHT: usize = 64;

/// One write the mix drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// The key of index `k`: 16 bytes, like the other benchmarks' keys.
pub fn key(k: usize) -> String {
    format!("soak-{k:011}")
}

/// One node's share of the key space and its random draws.
pub struct Mix {
    node: usize,
    nodes: usize,
    keys: usize,
    value_bytes: usize,
    rng: ChaCha8Rng,
    /// Own keys this node has put and not deleted since.
    live_own: BTreeSet<usize>,
}

impl Mix {
    /// The mix of node `node` of `nodes`, over `keys` keys (at least `nodes + 1`), with
    /// values of `value_bytes` bytes; the same draws for the same arguments.
    pub fn new(node: usize, nodes: usize, keys: usize, value_bytes: usize) -> Mix {
        Mix {
            node,
            nodes,
            keys,
            value_bytes,
            rng: ChaCha8Rng::seed_from_u64(0x50a4 + node as u64),
            live_own: BTreeSet::new(),
        }
    }

    /// Keys `0..shared()` are written by every node.
    pub fn shared(&self) -> usize {
        (self.keys / 10).max(1)
    }

    /// The next write.
    pub fn next(&mut self) -> Write {
        let roll = self.draw(100);
        if roll < 10
            && let Some(k) = self.pick_live_own()
        {
            self.live_own.remove(&k);
            return Write::Delete { key: key(k) };
        }
        let k = if (10..20).contains(&roll) {
            self.draw(self.shared())
        } else {
            self.own_key()
        };
        if k >= self.shared() {
            self.live_own.insert(k);
        }
        let mut value = vec![0; self.value_bytes];
        self.rng.fill_bytes(&mut value);
        Write::Put { key: key(k), value }
    }

    /// A uniform draw below `bound` (> 0).
    fn draw(&mut self, bound: usize) -> usize {
        (self.rng.next_u64() % bound as u64) as usize
    }

    /// One of this node's own keys: shared() + node + nodes * i.
    fn own_key(&mut self) -> usize {
        let first = self.shared() + self.node;
        let count = (self.keys - first).div_ceil(self.nodes);
        first + self.nodes * self.draw(count)
    }

    fn pick_live_own(&mut self) -> Option<usize> {
        if self.live_own.is_empty() {
            return None;
        }
        let nth = self.draw(self.live_own.len());
        self.live_own.iter().nth(nth).copied()
    }
}

/// What a driver has done so far, published on a `watch` channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Writes the node acknowledged.
    pub writes: u64,
    /// Writes due by the pace and not acknowledged yet (in flight or waiting).
    pub lag: u64,
}

/// Sends `mix`'s writes to `table` at `rate` per second until `stop` is cancelled; publishes
/// its progress on `progress`. Fails with the first failed call; at `stop`, waits for the calls
/// in flight.
pub async fn drive(
    table: table::Client,
    mut mix: Mix,
    rate: f64,
    stop: CancellationToken,
    progress: watch::Sender<Progress>,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut in_flight = FuturesUnordered::new();
    let (mut due, mut writes) = (0u64, 0u64);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(done) = in_flight.next() => {
                let () = done?;
                writes += 1;
            }
            _ = ticks.tick() => due += 1,
        }
        while due > 0 && in_flight.len() < MAX_IN_FLIGHT {
            in_flight.push(send(&table, mix.next()));
            due -= 1;
        }
        let lag = due + in_flight.len() as u64;
        progress.send_replace(Progress { writes, lag });
    }
    while let Some(done) = in_flight.next().await {
        done?;
        writes += 1;
    }
    progress.send_replace(Progress { writes, lag: 0 });
    Ok(())
}

/// One `Table.put` or `Table.delete` call.
async fn send(table: &table::Client, write: Write) -> anyhow::Result<()> {
    match write {
        Write::Put { key, value } => {
            let mut request = table.put_request();
            request.get().set_key(&key);
            request.get().set_value(&value);
            request.send().promise.await.map_err(remote_error)?;
        }
        Write::Delete { key } => {
            let mut request = table.delete_request();
            request.get().set_key(&key);
            request.send().promise.await.map_err(remote_error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(mix: &mut Mix, n: usize) -> Vec<Write> {
        (0..n).map(|_| mix.next()).collect()
    }

    #[test]
    fn keys_are_sixteen_bytes() {
        assert_eq!(key(42), "soak-00000000042");
        assert_eq!(key(4999).len(), 16);
    }

    #[test]
    fn the_mix_is_eighty_ten_ten() {
        let mut mix = Mix::new(0, 2, 5000, 100);
        let writes = draws(&mut mix, 20_000);
        let shared = mix.shared();
        let index = |key: &str| key[5..].parse::<usize>().unwrap();
        let deletes = writes
            .iter()
            .filter(|w| matches!(w, Write::Delete { .. }))
            .count();
        let on_shared = writes
            .iter()
            .filter(|w| matches!(w, Write::Put { key, .. } if index(key) < shared))
            .count();
        assert!((1_800..2_200).contains(&deletes), "{deletes} deletes");
        assert!(
            (1_800..2_200).contains(&on_shared),
            "{on_shared} shared puts"
        );
    }

    #[test]
    fn nodes_write_their_own_keys_and_delete_only_keys_they_put() {
        let shared = Mix::new(0, 2, 5000, 100).shared();
        for node in 0..2 {
            let mut mix = Mix::new(node, 2, 5000, 100);
            let mut put = BTreeSet::new();
            for write in draws(&mut mix, 5_000) {
                match write {
                    Write::Put { key, value } => {
                        let k: usize = key[5..].parse().unwrap();
                        assert!(k < 5000 && (k < shared || (k - shared) % 2 == node));
                        assert_eq!(value.len(), 100);
                        put.insert(key);
                    }
                    Write::Delete { key } => assert!(put.contains(&key), "{key} never put"),
                }
            }
        }
    }

    #[test]
    fn the_same_node_draws_the_same_writes() {
        let (mut a, mut b) = (Mix::new(1, 2, 100, 8), Mix::new(1, 2, 100, 8));
        assert_eq!(draws(&mut a, 50), draws(&mut b, 50));
    }
}
