//! Name resolution through the system resolver (`getaddrinfo` and
//! `getnameinfo`, so `/etc/hosts` and nsswitch apply and `localhost`
//! resolves without any network), run on tokio's blocking pool with a
//! timeout and a bound on concurrent lookups. Nothing here blocks an async
//! thread.
//!
//! Fairness: `getaddrinfo` cannot be cancelled, so a lookup's thread lives
//! until the resolver gives up, whatever our timeout says. Each lookup
//! therefore keeps its place in the pool (64 in all) and in its client's
//! share (8 per client address, IPv6 by /64) until its thread returns, not
//! until its waiter times out: a flood of names that never resolve holds at
//! most 8 threads per client, and other clients' lookups (`localhost` from
//! /etc/hosts among them) still find free places.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use sixsocks_proto::Host;

use crate::destination;
use crate::error::RequestError;

/// Most lookups in flight at once; further ones wait for a slot (their
/// wait counts against their timeout).
const MAX_CONCURRENT_LOOKUPS: usize = 64;
/// Most lookups in flight for one client (its share of the pool).
const MAX_LOOKUPS_PER_CLIENT: usize = 8;

#[derive(Clone)]
pub struct Resolver {
    timeout: Duration,
    slots: Arc<Semaphore>,
    /// Each client's share, while it has lookups in flight or waiting.
    clients: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

/// A client's place in its share; the share leaves the table with the
/// last place (and no waiter).
struct ClientPlace {
    permit: Option<OwnedSemaphorePermit>,
    key: IpAddr,
    clients: Arc<Mutex<HashMap<IpAddr, Arc<Semaphore>>>>,
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        // Only the table holds the share: no place and no waiter left.
        if map
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.key);
        }
    }
}

impl Resolver {
    pub fn new(timeout: Duration) -> Self {
        Resolver {
            timeout,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS)),
            clients: Arc::default(),
        }
    }

    /// The same pool and shares with another timeout: a reload keeps the
    /// places that hung lookups still hold (their threads outlive it).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Resolver {
            timeout,
            ..self.clone()
        }
    }

    /// Clients with lookups in flight or waiting now.
    pub fn clients_in_flight(&self) -> usize {
        self.clients.lock().map_or(0, |m| m.len())
    }

    /// Forward lookup: every address of `name`, in the resolver's order,
    /// without duplicates. An IP literal is returned as is, without a lookup.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, RequestError> {
        self.lookup_for(name, None).await
    }

    /// [`Resolver::lookup`] within `client`'s share of the pool.
    pub async fn lookup_for(
        &self,
        name: &str,
        client: Option<IpAddr>,
    ) -> Result<Vec<IpAddr>, RequestError> {
        // Read as getaddrinfo would read it, without a trip to the pool.
        if let Some(ip) = crate::destination::literal(name) {
            return Ok(vec![ip]);
        }
        let owned = name.to_owned();
        let mut addrs = self
            .blocking(client, move || dns_lookup::lookup_host(&owned))
            .await?;
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        if addrs.is_empty() {
            return Err(RequestError::Resolve(format!("{name}: no addresses")));
        }
        Ok(addrs)
    }

    /// Resolve a target host: for CONNECT, RESOLVE, UDP datagrams and
    /// BIND's expected host alike. `.onion` names are never sent to DNS
    /// (RFC 7686): they fail with Tor's onion codes. Unspecified addresses
    /// are never targets ([`crate::destination`]): a name's unspecified
    /// addresses are dropped, and a name with nothing else is refused (`02`).
    /// `client` (the requesting client's address) takes its lookup from
    /// that client's share of the pool.
    pub async fn target(
        &self,
        host: &Host,
        client: Option<IpAddr>,
    ) -> Result<Vec<IpAddr>, RequestError> {
        match host {
            Host::Ip(ip) => {
                destination::refuse_unspecified(*ip)?;
                Ok(vec![*ip])
            }
            Host::Domain(name) => {
                if let Some(valid) = destination::onion_address(name) {
                    return Err(if valid {
                        RequestError::OnionUnreachable
                    } else {
                        RequestError::OnionInvalid
                    });
                }
                let mut addrs = self.lookup_for(name, client).await?;
                let Some(&first) = addrs.first() else {
                    return Err(RequestError::HostUnreachable);
                };
                addrs.retain(|a| !destination::is_unspecified(*a));
                if addrs.is_empty() {
                    return Err(RequestError::UnspecifiedTarget(first));
                }
                Ok(addrs)
            }
        }
    }

    /// Reverse lookup: the name of `ip` (fails when it has none), within
    /// `client`'s share of the pool.
    pub async fn reverse(
        &self,
        ip: IpAddr,
        client: Option<IpAddr>,
    ) -> Result<String, RequestError> {
        self.blocking(client, move || dns_lookup::lookup_addr(&ip))
            .await
    }

    /// `client`'s place in its share (waits while the share is in use).
    async fn client_place(&self, client: IpAddr) -> Result<ClientPlace, RequestError> {
        let key = destination::client_key(client);
        let share = {
            let mut map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(MAX_LOOKUPS_PER_CLIENT)))
                .clone()
        };
        // From here the place (even unfilled) cleans the share up.
        let mut place = ClientPlace {
            permit: None,
            key,
            clients: self.clients.clone(),
        };
        place.permit = Some(share.acquire_owned().await.map_err(|_| shut_down())?);
        Ok(place)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        client: Option<IpAddr>,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, RequestError> {
        let work = async {
            let place = match client {
                Some(ip) => Some(self.client_place(ip).await?),
                None => None,
            };
            let permit = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| shut_down())?;
            // The places go with the thread: they come back when
            // getaddrinfo returns, not when our timeout gives up on it.
            let call = move || {
                let _held = (permit, place);
                f()
            };
            match tokio::task::spawn_blocking(call).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(RequestError::Resolve(e.to_string())),
                Err(e) => Err(RequestError::Resolve(e.to_string())),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(RequestError::ResolveTimeout))
    }
}

fn shut_down() -> RequestError {
    RequestError::Resolve("resolver shut down".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_resolves_without_network() {
        let r = Resolver::new(Duration::from_secs(5));
        let addrs = r.lookup("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert_eq!(
            r.lookup("127.0.0.7").await.unwrap(),
            vec!["127.0.0.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.lookup("[::1]").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn reverse_of_loopback_is_localhost() {
        let r = Resolver::new(Duration::from_secs(5));
        let name = r.reverse("127.0.0.1".parse().unwrap(), None).await.unwrap();
        assert_eq!(name, "localhost");
    }

    /// Issue 11, item 5: one client's lookups take at most its share; a
    /// second client still gets a place at once, and the shares leave the
    /// table with their last place.
    #[tokio::test]
    async fn one_client_cannot_take_every_place() {
        let r = Resolver::new(Duration::from_secs(5));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..MAX_LOOKUPS_PER_CLIENT {
            held.push(r.client_place(a).await.unwrap());
        }
        let more = tokio::time::timeout(Duration::from_millis(50), r.client_place(a)).await;
        assert!(more.is_err(), "a ninth place for the same client");
        // The same /64 is the same client.
        let a6: IpAddr = "2001:db8::1".parse().unwrap();
        let _b = r.client_place("192.0.2.2".parse().unwrap()).await.unwrap();
        let _c = r.client_place(a6).await.unwrap();
        assert_eq!(r.clients_in_flight(), 3);
        drop(held);
        drop(_b);
        drop(_c);
        assert_eq!(r.clients_in_flight(), 0, "shares left behind");
    }
}
