//! Peer clock offsets, measured with GetTime (reference §5: the initiator's send time, the
//! responder's receive and send times, the initiator's receive time, as NTP does). Each
//! connection with a peer, dialled or accepted, samples every [`SAMPLE_EVERY`] while it lasts
//! and keeps the latest offset and round trip in the peer's `PeerStatus` (`status`, the
//! status page, `/metrics`). Measured only: no clock is adjusted here (peer clock sync is a
//! later feature, DESIGN.md). Calls only the peer's `Sync.getTime` and `PeerRegistry`.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::node::Node;
use crate::schema::sync_capnp::sync;

/// How often a connection samples its peer's clock.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);

/// One exchange's result, nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The peer's clock minus ours.
    pub offset: i64,
    /// The round trip less the peer's time between receiving and answering.
    pub rtt: i64,
}

/// The NTP estimate from the four times (Unix nanoseconds): `sent` and `received` by us,
/// `peer_received` and `peer_sent` by the peer. offset = ((t1 - t0) + (t2 - t3)) / 2, round
/// trip = (t3 - t0) - (t2 - t1), never below 0; saturating on absurd input.
pub fn estimate(sent: i64, peer_received: i64, peer_sent: i64, received: i64) -> Sample {
    let there = i128::from(peer_received) - i128::from(sent);
    let back = i128::from(peer_sent) - i128::from(received);
    let offset = (there + back) / 2;
    let rtt = (i128::from(received) - i128::from(sent))
        - (i128::from(peer_sent) - i128::from(peer_received));
    let clamp = |value: i128| value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    Sample {
        offset: clamp(offset),
        rtt: clamp(rtt.max(0)),
    }
}

/// One GetTime exchange with `remote`. Errors: the call's (`ConnFail:` once the connection
/// is gone, `NoAccess:` from a peer that no longer serves us).
pub async fn sample(node: &Node, remote: &sync::Client) -> Result<Sample, Error> {
    let clock = node.store().clock();
    let mut request = remote.get_time_request();
    request
        .get()
        .set_initiator(node.identity().fingerprint().as_str());
    let sent = clock.physical_nanos();
    request.get().init_req().set_send_ts(sent);
    let response = request.send().promise.await?;
    let received = clock.physical_nanos();
    let answer = response.get()?.get_resp()?;
    Ok(estimate(
        sent,
        answer.get_recv_ts(),
        answer.get_send_ts(),
        received,
    ))
}

/// Samples `peer`'s clock over `remote` now and every [`SAMPLE_EVERY`], until the connection
/// closes (`ConnFail:`): run it beside the connection's sessions, on its LocalSet. A refusal
/// (`NoAccess:`: GetTime needs a shared syncgroup or a declaration, which a connection opened
/// for a join has not yet) is tried again at the next sample.
pub async fn keep_sampling(node: Arc<Node>, peer: Fingerprint, remote: sync::Client) {
    loop {
        match sample(&node, &remote).await {
            Ok(measured) => node.peers().update_status(&peer, |status| {
                status.clock_offset_nanos = Some(measured.offset);
                status.clock_rtt_nanos = measured.rtt;
            }),
            Err(error @ Error::ConnFail(_)) => {
                tracing::debug!(%peer, %error, "clock sampling stopped: the connection closed");
                return;
            }
            Err(error) => tracing::debug!(%peer, %error, "clock sample refused; trying later"),
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_ahead_by_a_second_over_a_symmetric_link_reads_plus_one_second() {
        let second = 1_000_000_000;
        // Sent at 0; 10 ms each way; the peer, 1 s ahead, answers 2 ms after receiving.
        let sample = estimate(0, second + 10_000_000, second + 12_000_000, 22_000_000);
        assert_eq!(sample.offset, second);
        assert_eq!(sample.rtt, 20_000_000);
    }

    #[test]
    fn a_peer_behind_reads_negative_and_absurd_times_saturate_instead_of_overflowing() {
        let sample = estimate(1_000, 500, 600, 1_200);
        assert_eq!(sample.offset, -550);
        assert_eq!(sample.rtt, 100);
        let wild = estimate(i64::MIN, i64::MAX, i64::MAX, i64::MIN);
        assert_eq!(wild.offset, i64::MAX);
        assert_eq!(wild.rtt, 0);
    }
}
