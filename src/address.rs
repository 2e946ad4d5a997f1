//! The one `HOST:PORT` parser: every address a user gives (`serve --listen` and
//! `--peer-listen`, a client's `--addr`, the config's `listen` and `sync.peer_listen`, a
//! peer's address in `peer add` and `[[sync.peers]]`) is read here, with one error. HOST is a
//! name (resolved by the operating system's resolver, `std::net::ToSocketAddrs`), an IPv4
//! address, or an IPv6 address in brackets (`[::1]:7700`); PORT is 0-65535.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::{Error, Result};

/// What every address error says after the address: the accepted forms.
const FORMS: &str = "expected HOST:PORT, HOST a name (localhost), an IPv4 address \
                     (127.0.0.1) or an IPv6 address in brackets ([::1])";

/// Checks the syntax of `text` as `HOST:PORT` without resolving the name (a peer's address is
/// resolved when it is dialled). Returns the text trimmed. Errors: `InvalidArgument:`, naming
/// the address and the accepted forms.
pub fn check(text: &str) -> Result<&str> {
    let text = text.trim();
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text);
    }
    let bad = |why: &str| Error::invalid(format!("address {text:?}: {why}; {FORMS}"));
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(bad(&format!(
            "port {port:?} is not a number from 0 to 65535"
        )));
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(bad("not an IPv6 address in brackets"));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(name_char) {
        return Err(bad(&format!("{host:?} is not a host name")));
    }
    Ok(text)
}

/// Parses `text` as [`check`] does and resolves it to one socket address (the first IPv4
/// one if the name has any, as the node's default listens on IPv4 loopback). Errors:
/// `InvalidArgument:` for the syntax or a name that does not resolve.
pub fn resolve(text: &str) -> Result<SocketAddr> {
    let text = check(text)?;
    let found: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| Error::invalid(format!("address {text:?}: {error}; {FORMS}")))?
        .collect();
    found
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| Error::invalid(format!("address {text:?} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ipv4_and_bracketed_ipv6_resolve() {
        assert_eq!(resolve("localhost:17730").unwrap().port(), 17730);
        assert!(resolve("localhost:17730").unwrap().ip().is_loopback());
        assert_eq!(
            resolve("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:7700").unwrap(),
            "[::1]:7700".parse().unwrap()
        );
        assert_eq!(check(" peer.example:7701 ").unwrap(), "peer.example:7701");
    }

    #[test]
    fn every_bad_address_gets_the_one_error_naming_the_forms() {
        for bad in [
            "nowhere",
            "host:",
            "host:70000",
            "::1:7700",
            ":7700",
            "a b:1",
            "[x:1",
        ] {
            let error = check(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("InvalidArgument: address "),
                "{bad}: {error}"
            );
            assert!(error.contains("expected HOST:PORT"), "{bad}: {error}");
        }
        let error = resolve("no-such-host.invalid:1").unwrap_err().to_string();
        assert!(error.starts_with("InvalidArgument: address "), "{error}");
    }
}
