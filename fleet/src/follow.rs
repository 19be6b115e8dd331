//! The fleet's state kept current for whoever waits on it (the rollout driver, `hutong fleet
//! status --watch`): one consistent read, then a watch of every change after it, applied to
//! that snapshot. Waiting costs the store nothing while nothing changes, where reading the
//! whole fleet again each time would cost a province's configs per look (19 MiB and 0.8 s at
//! 3,000 gateways).

use std::time::Duration;

use anyhow::{Result, bail};
use etcd_client::{Client, EventType, WatchOptions, WatchStream};

use crate::{
    keys,
    store::{MAX_MESSAGE, Snapshot, read, timed},
};

pub struct Follow {
    pub snap: Snapshot,
    stream: WatchStream,
    client: Client,
}

impl Follow {
    /// Reads the fleet, and watches everything after that read.
    pub async fn start(client: &mut Client) -> Result<Follow> {
        let snap = read(client, None).await?;
        let from = WatchOptions::new().with_prefix().with_start_revision(snap.revision + 1);
        let mut watcher = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let stream = timed("watching the fleet", watcher.watch(keys::ROOT, Some(from))).await?;
        Ok(Follow { snap, stream, client: client.clone() })
    }

    /// Applies the changes that arrive within `within` (none is fine: the time passed).
    /// `Err`: the watch failed; start again.
    pub async fn changes(&mut self, within: Duration) -> Result<()> {
        let Ok(msg) = tokio::time::timeout(within, self.stream.message()).await else { return Ok(()) };
        let Some(resp) = msg? else { bail!("etcd: the fleet's watch ended") };
        if resp.canceled() {
            bail!("etcd: the fleet's watch was cancelled: {}", resp.cancel_reason());
        }
        let mut moved = false;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            // A gateway added, moved or removed: its keys change place, which one event at a
            // time cannot tell from leftovers (a push writes the home before the keys). Rare:
            // read the fleet again, at its new revision.
            moved |= kv.key().starts_with(keys::GATEWAYS.as_bytes());
            let value = (ev.event_type() == EventType::Put).then(|| kv.value());
            self.snap.apply(kv.key(), value, kv.mod_revision());
            self.snap.revision = self.snap.revision.max(kv.mod_revision());
        }
        if moved {
            let mut client = self.client.clone();
            *self = Follow::start(&mut client).await?;
        }
        Ok(())
    }

    /// Waits until the snapshot holds revision `rev` (a write of the caller's own), at most
    /// `within`.
    pub async fn reach(&mut self, rev: i64, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while self.snap.revision < rev {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("etcd: revision {rev} did not arrive on the fleet's watch within {within:?}");
            }
            self.changes(left).await?;
        }
        Ok(())
    }
}
