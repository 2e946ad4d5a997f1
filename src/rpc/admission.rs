//! Connection caps, one [`Admission`] per listening port: a connection takes a [`Slot`] when
//! accepted and gives it back when it closes. Caps: connections on the port
//! ([`MAX_CONNECTIONS_PER_PORT`]), connections not yet authenticated
//! ([`MAX_PRE_AUTH_CONNECTIONS`]) and of those, per source IP ([`MAX_PRE_AUTH_PER_IP`]), and on
//! the peer port connections per TLS identity ([`MAX_CONNECTIONS_PER_PEER`]). A refused
//! connection is closed, after being told `ResourceExhausted:` where it can be (an app
//! connection in an RPC `Abort`, [`abort_frame`]; a peer over its identity cap in the TLS
//! acceptance byte), and refusals are logged as one summary line per [`REFUSAL_LOG_PERIOD`],
//! not one per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::error::Error;
use crate::identity::Fingerprint;
use crate::tally::Tally;

/// Open connections one port accepts (app and peer ports each): 256.
pub const MAX_CONNECTIONS_PER_PORT: usize = 256;
/// Connections of one port still authenticating (logging in, or in the TLS handshake): 64.
pub const MAX_PRE_AUTH_CONNECTIONS: usize = 64;
/// Connections still authenticating from one source IP, per port: 32.
pub const MAX_PRE_AUTH_PER_IP: usize = 32;
/// Connections one peer identity (TLS fingerprint) may hold on the peer port: 8 (a peer
/// normally holds one or two, plus one-off calls).
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// Refusals are summed up in one log line at most this often.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The caps of one port and who holds them. Shared by the accept loop and the connections.
pub struct Admission {
    port: &'static str,
    state: Mutex<State>,
}

struct State {
    open: usize,
    pre_auth: usize,
    pre_auth_by_ip: HashMap<IpAddr, usize>,
    by_peer: HashMap<Fingerprint, usize>,
    /// Connections refused over the caps (logged once, then summed up every
    /// [`REFUSAL_LOG_PERIOD`]: anyone can cause them, and a line each would fill the disk).
    refused: Tally,
    /// Connections that failed to authenticate (a failed TLS handshake, a wrong token).
    failed: Tally,
}

impl Default for State {
    fn default() -> State {
        State {
            open: 0,
            pre_auth: 0,
            pre_auth_by_ip: HashMap::new(),
            by_peer: HashMap::new(),
            refused: Tally::new(REFUSAL_LOG_PERIOD),
            failed: Tally::new(REFUSAL_LOG_PERIOD),
        }
    }
}

impl Admission {
    /// The caps of the port called `port` in logs ("app", "peer").
    pub fn new(port: &'static str) -> Arc<Admission> {
        Arc::new(Admission {
            port,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new, unauthenticated connection from `ip` (None: no address, e.g. an
    /// in-memory pipe), or refuses it with `ResourceExhausted:` (and counts the refusal).
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Slot, Error> {
        let mut state = self.state();
        let from_ip = ip.map_or(0, |ip| state.pre_auth_by_ip.get(&ip).copied().unwrap_or(0));
        let refusal = if state.open >= MAX_CONNECTIONS_PER_PORT {
            Some(format!("{MAX_CONNECTIONS_PER_PORT} connections are open"))
        } else if state.pre_auth >= MAX_PRE_AUTH_CONNECTIONS {
            Some(format!(
                "{MAX_PRE_AUTH_CONNECTIONS} connections are authenticating"
            ))
        } else if from_ip >= MAX_PRE_AUTH_PER_IP {
            Some(format!(
                "{MAX_PRE_AUTH_PER_IP} connections from this address are authenticating"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.note_refusal(&mut state, &reason);
            return Err(Error::ResourceExhausted(reason));
        }
        state.open += 1;
        state.pre_auth += 1;
        if let Some(ip) = ip {
            *state.pre_auth_by_ip.entry(ip).or_default() += 1;
        }
        Ok(Slot {
            admission: self.clone(),
            pre_auth: Some(PreAuth {
                admission: self.clone(),
                ip,
            }),
            peer: None,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.state().open
    }

    /// Connections refused since the last summary line.
    pub fn refused(&self) -> usize {
        self.state().refused.count()
    }

    /// Failed authentications since the last summary line.
    pub fn failed(&self) -> usize {
        self.state().failed.count()
    }

    /// Logs the refusals and failed authentications counted over the last period, if the
    /// period is over.
    pub fn flush_refusals(&self) {
        let mut state = self.state();
        self.summarise(&mut state);
    }

    /// Counts a connection that failed to authenticate: the first of a period is logged with
    /// its reason, the rest summed up every [`REFUSAL_LOG_PERIOD`].
    pub fn note_failure(&self, reason: &str) {
        let mut state = self.state();
        if state.failed.note() {
            tracing::warn!(
                port = self.port,
                "a connection failed to authenticate ({reason}); failures are summed up every \
                 {REFUSAL_LOG_PERIOD:?}"
            );
        }
        self.summarise(&mut state);
    }

    fn note_refusal(&self, state: &mut State, reason: &str) {
        if state.refused.note() {
            tracing::warn!(
                port = self.port,
                "refusing connections over the caps ({reason}); refusals are summed up every \
                 {REFUSAL_LOG_PERIOD:?}"
            );
        }
        self.summarise(state);
    }

    fn summarise(&self, state: &mut State) {
        if let Some((count, period)) = state.refused.summary() {
            tracing::warn!(
                port = self.port,
                "refused {count} connections over the caps in the last {period:?}"
            );
        }
        if let Some((count, period)) = state.failed.summary() {
            tracing::warn!(
                port = self.port,
                "{count} connections failed to authenticate in the last {period:?}"
            );
        }
    }
}

/// One admitted connection's place under the caps; given back on drop.
pub struct Slot {
    admission: Arc<Admission>,
    pre_auth: Option<PreAuth>,
    peer: Option<Fingerprint>,
}

/// A connection's place among those still authenticating; given back on drop.
pub struct PreAuth {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
}

impl Drop for PreAuth {
    fn drop(&mut self) {
        let mut state = self.admission.state();
        state.pre_auth -= 1;
        if let Some(ip) = self.ip {
            release_key(&mut state.pre_auth_by_ip, &ip);
        }
    }
}

impl Slot {
    /// The caps this connection counts under.
    pub fn admission(&self) -> Arc<Admission> {
        self.admission.clone()
    }

    /// Counts this connection as failing to authenticate (see [`Admission::note_failure`]).
    pub fn note_failure(&self, reason: &str) {
        self.admission.note_failure(reason);
    }

    /// The connection authenticated: it leaves the pre-authentication counts.
    pub fn authenticated(&mut self) {
        self.pre_auth = None;
    }

    /// The pre-authentication place, to give back (drop) when the connection authenticates
    /// somewhere the slot itself does not reach.
    pub fn take_pre_auth(&mut self) -> Option<PreAuth> {
        self.pre_auth.take()
    }

    /// Counts the connection against `peer`'s cap, or refuses it with `ResourceExhausted:`.
    pub fn bind_peer(&mut self, peer: &Fingerprint) -> Result<(), Error> {
        let mut state = self.admission.state();
        let held = state.by_peer.get(peer).copied().unwrap_or(0);
        if held >= MAX_CONNECTIONS_PER_PEER {
            let reason = format!("peer {peer} holds {MAX_CONNECTIONS_PER_PEER} connections");
            self.admission.note_refusal(&mut state, &reason);
            return Err(Error::ResourceExhausted(reason));
        }
        *state.by_peer.entry(peer.clone()).or_default() += 1;
        self.peer = Some(peer.clone());
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.authenticated();
        let mut state = self.admission.state();
        state.open -= 1;
        if let Some(peer) = self.peer.take() {
            release_key(&mut state.by_peer, &peer);
        }
    }
}

fn release_key<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// The bytes of a Cap'n Proto RPC `Abort` carrying `error`: written to a refused app
/// connection before it is closed, so any client (Rust, Python, C++) reports the reason
/// (`ResourceExhausted: ...`) instead of a bare disconnect.
pub fn abort_frame(error: &Error) -> Vec<u8> {
    let mut message = capnp::message::Builder::new_default();
    let mut abort = message
        .init_root::<capnp_rpc::rpc_capnp::message::Builder<'_>>()
        .init_abort();
    abort.set_reason(error.to_string().as_str());
    abort.set_type(capnp_rpc::rpc_capnp::exception::Type::Overloaded);
    capnp::serialize::write_message_to_words(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn authenticating_connections_are_capped_per_address_then_per_port() {
        let admission = Admission::new("test");
        let from_one: Vec<_> = (0..MAX_PRE_AUTH_PER_IP)
            .map(|_| admission.admit(ip(1)).unwrap())
            .collect();
        let refused = admission.admit(ip(1)).err().unwrap();
        assert!(refused.to_string().starts_with("ResourceExhausted: "));
        let mut others: Vec<_> = (MAX_PRE_AUTH_PER_IP..MAX_PRE_AUTH_CONNECTIONS)
            .map(|i| admission.admit(ip(2 + (i % 200) as u8)).unwrap())
            .collect();
        assert!(admission.admit(ip(250)).is_err(), "the port's pre-auth cap");
        assert_eq!(admission.refused(), 2);
        for slot in &mut others {
            slot.authenticated();
        }
        assert!(
            admission.admit(ip(250)).is_ok(),
            "authenticated ones leave the count"
        );
        drop(from_one);
        assert!(admission.admit(ip(1)).is_ok());
        assert_eq!(admission.open(), others.len());
    }

    #[test]
    fn open_connections_are_capped_per_port() {
        let admission = Admission::new("test");
        let slots: Vec<_> = (0..MAX_CONNECTIONS_PER_PORT)
            .map(|_| {
                let mut slot = admission.admit(None).unwrap();
                slot.authenticated();
                slot
            })
            .collect();
        assert!(admission.admit(None).is_err());
        drop(slots);
        assert_eq!(admission.open(), 0);
        assert!(admission.admit(None).is_ok());
    }

    #[test]
    fn one_peer_identity_holds_at_most_its_cap() {
        let admission = Admission::new("test");
        let (peer, other) = (
            Fingerprint::parse(&"a".repeat(64)).unwrap(),
            Fingerprint::parse(&"b".repeat(64)).unwrap(),
        );
        let mut slots = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            let mut slot = admission.admit(None).unwrap();
            slot.bind_peer(&peer).unwrap();
            slots.push(slot);
        }
        let mut extra = admission.admit(None).unwrap();
        let refused = extra.bind_peer(&peer).err().unwrap();
        assert!(refused.to_string().starts_with("ResourceExhausted: "));
        extra.bind_peer(&other).unwrap();
        slots.pop();
        let mut again = admission.admit(None).unwrap();
        again.bind_peer(&peer).unwrap();
    }

    #[test]
    fn failed_handshakes_are_logged_once_then_counted() {
        let admission = Admission::new("peer");
        for _ in 0..1000 {
            admission.note_failure("bad certificate");
        }
        // The first was logged with its reason; all wait for the period's summary line.
        assert_eq!(admission.failed(), 1000);
    }

    #[test]
    fn a_refused_connection_is_told_why_in_an_rpc_abort() {
        let error = Error::ResourceExhausted("256 connections are open".into());
        let frame = abort_frame(&error);
        let reader = capnp::serialize::read_message_from_flat_slice(
            &mut frame.as_slice(),
            capnp::message::ReaderOptions::new(),
        )
        .unwrap();
        let message = reader
            .get_root::<capnp_rpc::rpc_capnp::message::Reader<'_>>()
            .unwrap();
        let capnp_rpc::rpc_capnp::message::Abort(abort) = message.which().unwrap() else {
            panic!("not an abort");
        };
        let reason = abort
            .unwrap()
            .get_reason()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(reason, "ResourceExhausted: 256 connections are open");
    }
}
