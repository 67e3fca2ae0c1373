//! The etcd v3 backend, through the `etcd-client` crate (gRPC). Each member of the etcd
//! cluster has its own connection; a request that one member cannot take goes to the
//! next ([`members`]). Every request is bounded by the configured timeout.

mod members;
mod txn;

use std::{sync::Arc, time::Duration};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use members::{Members, Repeat};
use tokio::sync::mpsc;

use super::{
    Entry, Expect, LeaseId, LeaseStatus, Listing, PutOutcome, Store, StoreConfig, StoreError, WatchEvent, WatchMessage,
    WatchStart, election,
};

/// A connection to an etcd v3 cluster, scoped to one cluster prefix.
#[derive(Clone)]
pub struct EtcdStore {
    members: Arc<Members>,
    /// `/PREFIX/`: prepended to every key.
    root: String,
    timeout: Duration,
}

impl EtcdStore {
    /// Prepares a connection to each member. Nothing is sent yet: a member is connected
    /// (and, with credentials, authenticated) by the first request that goes to it.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(5), config.request_timeout)
            // A member cut off from the quorum refuses at once (and ends its watches)
            // instead of holding requests it cannot serve.
            .with_require_leader(true);
        let scheme = if let Some(tls) = &config.tls {
            let mut tls_options = TlsOptions::new();
            if let Some(ca) = &tls.ca_pem {
                tls_options = tls_options.ca_certificate(Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                tls_options = tls_options.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls_options);
            "https"
        } else {
            "http"
        };
        if let Some(credentials) = &config.credentials {
            options = options.with_user(credentials.user.clone(), credentials.password.clone());
        }
        let urls: Vec<String> = config.url.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect();
        let endpoints = config.url.endpoints.join(",");
        let members = Members::new(urls, endpoints, options, config.credentials.clone());
        Ok(EtcdStore { members, root: format!("/{}/", config.url.prefix), timeout: config.request_timeout })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.root)
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Option<Entry> {
        let key = String::from_utf8_lossy(kv.key());
        let key = key.strip_prefix(&self.root)?.to_owned();
        Some(Entry {
            key,
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            lease: (kv.lease() != 0).then_some(kv.lease()),
        })
    }

    /// One request, to whichever member takes it, within the request timeout.
    async fn call<T, F, Fut>(&self, operation: &'static str, repeat: Repeat, request: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.members.call(operation, repeat, self.timeout, request).await
    }

    /// Compacts the store's history up to `revision` (maintenance; the tests use it to
    /// check that watches recover from compaction).
    pub async fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.call("compact", Repeat::Safe, |mut c| async move { c.compact(revision, None).await }).await.map(|_| ())
    }
}

/// etcd's answer to a write on a lease that expired or was revoked, as its own error.
pub(super) fn lease_gone(lease: Option<LeaseId>) -> impl Fn(StoreError) -> StoreError {
    move |error| match (&error, lease) {
        (StoreError::Request { message, .. }, Some(lease)) if message.contains("requested lease not found") => {
            StoreError::LeaseGone { lease }
        }
        _ => error,
    }
}

/// A short message: gRPC statuses carry the transport error as a chain of sources,
/// whose root ("Connection refused") is what tells the operator the most.
fn request_error(operation: &'static str, error: etcd_client::Error) -> StoreError {
    let message = match &error {
        etcd_client::Error::GRpcStatus(status) => {
            let mut root: Option<&dyn std::error::Error> = std::error::Error::source(status);
            while let Some(next) = root.and_then(std::error::Error::source) {
                root = Some(next);
            }
            match root {
                Some(root) => format!("{}: {root}", status.message()),
                None => status.message().to_owned(),
            }
        }
        other => other.to_string(),
    };
    // etcd's own words for a missing or insufficient authentication: retrying cannot help.
    if message.contains("user name is empty") || message.contains("invalid auth token") {
        return StoreError::AuthRequired { message };
    }
    if message.contains("permission denied") {
        return StoreError::PermissionDenied { operation, message };
    }
    StoreError::Request { operation, message }
}

impl Store for EtcdStore {
    fn endpoints(&self) -> String {
        self.members.endpoints.clone()
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        let key = self.full_key("");
        // A range over one key with count only: the header carries the revision.
        let response = self
            .call("get revision", Repeat::Safe, |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(response.header().map(|h| h.revision()).unwrap_or_default())
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let key = self.full_key(key);
        let response = self
            .call("get", Repeat::Safe, |mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await?;
        Ok(response.kvs().first().and_then(|kv| self.entry(kv)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let prefix = self.full_key(prefix);
        let response = self
            .call("list", Repeat::Safe, |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(Listing {
            entries: response.kvs().iter().filter_map(|kv| self.entry(kv)).collect(),
            revision: response.header().map(|h| h.revision()).unwrap_or_default(),
        })
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), StoreError> {
        let key = self.full_key(key);
        // Writing the same value twice leaves what writing it once does.
        self.call("put", Repeat::Safe, |mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, lease.map(|l| PutOptions::new().with_lease(l))).await }
        })
        .await
        .map(|_| ())
        .map_err(lease_gone(lease))
    }

    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect: Expect,
    ) -> Result<PutOutcome, StoreError> {
        let full = self.full_key(key);
        let compare = match expect {
            Expect::Absent => Compare::version(full.clone(), CompareOp::Equal, 0),
            Expect::ModRevision(revision) => Compare::mod_revision(full.clone(), CompareOp::Equal, revision),
        };
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(full.clone(), value, options)])
            .or_else([TxnOp::get(full, None)]);
        let response = self
            .call("conditional put", Repeat::Unsafe, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(lease_gone(lease))?;
        if response.succeeded() {
            return Ok(PutOutcome::Written);
        }
        let current = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().and_then(|kv| self.entry(kv)),
            _ => None,
        });
        Ok(PutOutcome::Conflict(current))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = self.full_key(key);
        // Not repeated: a second try would report "was not there".
        let response = self
            .call("delete", Repeat::Unsafe, |mut c| {
                let key = key.clone();
                async move { c.delete(key, None::<DeleteOptions>).await }
            })
            .await?;
        Ok(response.deleted() > 0)
    }

    async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, StoreError> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(full.clone(), CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::delete(full, None)]);
        let response = self
            .call("conditional delete", Repeat::Unsafe, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        Ok(response.succeeded())
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        // A lease granted by an interrupted first try holds nothing and expires by itself.
        let response =
            self.call("grant lease", Repeat::Safe, |mut c| async move { c.lease_grant(seconds, None).await }).await?;
        Ok(response.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<bool, StoreError> {
        // The client sends one keep-alive when the stream opens and reads the answer;
        // dropping the stream afterwards is all there is to a single refresh.
        match self.call("keep lease alive", Repeat::Safe, |mut c| async move { c.lease_keep_alive(lease).await }).await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Request { message, .. }) if message.contains("lease not found") => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn lease_status(&self, lease: LeaseId) -> Result<Option<LeaseStatus>, StoreError> {
        let response = self
            .call("lease time to live", Repeat::Safe, |mut c| async move { c.lease_time_to_live(lease, None).await })
            .await?;
        if response.ttl() < 0 {
            return Ok(None);
        }
        Ok(Some(LeaseStatus { granted_ttl: response.granted_ttl(), remaining_ttl: response.ttl() }))
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        match self.call("revoke lease", Repeat::Safe, |mut c| async move { c.lease_revoke(lease).await }).await {
            Ok(_) => Ok(()),
            // Revoked already (an interrupted first try) or expired: what was asked for.
            Err(StoreError::Request { message, .. }) if message.contains("not found") => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn keeps_history(&self) -> bool {
        true
    }

    async fn watch(
        &self,
        prefix: &str,
        start: WatchStart,
    ) -> Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError> {
        let key = self.full_key(prefix);
        let (listing, from_revision) = super::watch::history_start(self, prefix, start).await?;
        let options = WatchOptions::new().with_prefix().with_start_revision(from_revision);
        let mut stream = self
            .call("watch", Repeat::Safe, |mut c| {
                let (key, options) = (key.clone(), options.clone());
                async move { c.watch(key, Some(options)).await }
            })
            .await?;
        let (tx, rx) = mpsc::channel(64);
        if let Some(listing) = listing {
            // The channel is new and empty: this cannot fail for want of room.
            let _ = tx.try_send(Ok(WatchMessage::Listing(listing)));
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    // Nobody listens any more: end the watch.
                    _ = tx.closed() => return,
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return,
                    Err(error) => {
                        let _ = tx.send(Err(request_error("watch", error))).await;
                        return;
                    }
                };
                if response.compact_revision() > 0 {
                    let _ =
                        tx.send(Ok(WatchMessage::Compacted { compact_revision: response.compact_revision() })).await;
                    return;
                }
                if response.canceled() {
                    let reason = response.cancel_reason().to_owned();
                    let _ = tx.send(Err(StoreError::Request { operation: "watch", message: reason })).await;
                    return;
                }
                let events: Vec<WatchEvent> = response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let kv = event.kv()?;
                        match event.event_type() {
                            EventType::Put => this.entry(kv).map(WatchEvent::Put),
                            EventType::Delete => {
                                this.entry(kv).map(|e| WatchEvent::Delete { key: e.key, revision: kv.mod_revision() })
                            }
                        }
                    })
                    .collect();
                if !events.is_empty() && tx.send(Ok(WatchMessage::Events(events))).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<bool, StoreError> {
        election::campaign_by_key(self, election, value, lease).await
    }

    async fn leader(&self, election: &str) -> Result<Option<Entry>, StoreError> {
        election::leader_by_key(self, election).await
    }
}
